"""D3ETR (arXiv 2211.09768), Sec. 3, MixMatcher's Adaptive Matching; also DETRDistill's logits KD.

Distil each decoder layer through a Hungarian matching of teacher and student predictions.
"""

from typing import List, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.utils import ConfigType

from ..common import OWN_GROUP, DecoderOutputs
from .matched_pair_kd import MatchedPairKD, Pairs


@MODELS.register_module()
class AdaptiveMatchKD(MatchedPairKD):
    """D3ETR's adaptive matching (and DETRDistill's logits distillation).

    In every student decoder layer l, paired with teacher layer t(l) by
    :meth:`MixMatcher.layer_pairs`, the teacher's predictions (all queries, no
    threshold, sigmoid scores as soft labels) are pseudo ground truth: the
    student's own queries are Hungarian-matched to them on the matcher's
    costs, and every matched pair is distilled (see :class:`MatchedPairKD`).

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'d3etr.adaptive'``.
        matcher (dict): Matcher config; its ``adaptive_match_layers`` and
            ``layer_pairs`` are used. Defaults to ``MixMatcher`` (costs:
            soft-label BCE 1, L1 5, GIoU 2).
        losses (dict, optional): Pair losses merged over ``default_losses``;
            ``None`` switches one off. Keys: loss_cls, loss_bbox, loss_iou,
            loss_self_attn, loss_cross_attn. Defaults to None.
    """

    student_group = OWN_GROUP

    def __init__(
        self,
        prefix: str = 'd3etr.adaptive',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=True, fixed=False),
        losses: Optional[dict] = None,
    ) -> None:
        super().__init__(prefix, matcher, losses)

    def match_layers(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        layers: List[Tuple[int, int]],
        img_metas: List[dict],
    ) -> List[Pairs]:
        """Hungarian matching of each student layer to its teacher layer, all in one call."""
        s_layers, t_layers = (list(ls) for ls in zip(*layers))
        s_cls, s_box = student_out.group(OWN_GROUP)
        t_cls, t_box = teacher_out.group(OWN_GROUP)
        s_idx, t_idx = self.matcher.adaptive_match_layers(
            s_cls[s_layers], s_box[s_layers], t_cls[t_layers], t_box[t_layers], img_metas
        )
        return list(zip(s_idx, t_idx))
