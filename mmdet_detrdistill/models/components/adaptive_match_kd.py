"""D3ETR (arXiv 2211.09768), Sec. 3, MixMatcher's Adaptive Matching; also DETRDistill's logits KD.

Distil each decoder layer through a Hungarian matching of teacher and student predictions.
"""

import dataclasses
from typing import List, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.utils import ConfigType

from ..common import OWN_GROUP, DecoderOutputs, clamp_to_image
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
        clamp_teacher_boxes (bool): Cut the teacher's boxes to the image
            (:func:`clamp_to_image`) before they are matched against and
            distilled to, as DETRDistill's official code makes its pseudo
            ground truth. Defaults to False (D3ETR: the boxes as predicted).
    """

    student_group = OWN_GROUP

    def __init__(
        self,
        prefix: str = 'd3etr.adaptive',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=True, fixed=False),
        losses: Optional[dict] = None,
        clamp_teacher_boxes: bool = False,
    ) -> None:
        super().__init__(prefix, matcher, losses)
        self.clamp_teacher_boxes = clamp_teacher_boxes
        # other targets, other pairs: share a matching only with the same targets
        self.matching_key = (*self.matching_key, clamp_teacher_boxes)

    def teacher_targets(self, teacher_out: DecoderOutputs) -> DecoderOutputs:
        """The teacher's outputs, boxes cut to the image if ``clamp_teacher_boxes``."""
        if not self.clamp_teacher_boxes:
            return teacher_out
        return dataclasses.replace(teacher_out, bbox_preds=clamp_to_image(teacher_out.bbox_preds))

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
        t_cls, t_box = self.teacher_targets(teacher_out).group(OWN_GROUP)
        s_idx, t_idx = self.matcher.adaptive_match_layers(
            s_cls[s_layers], s_box[s_layers], t_cls[t_layers], t_box[t_layers], img_metas
        )
        return list(zip(s_idx, t_idx))

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, clamp_teacher_boxes={self.clamp_teacher_boxes}'
