"""Distil each decoder layer through a Hungarian matching of teacher and student predictions."""

from typing import Dict, Optional

from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType
from torch import Tensor

from ..detectors import OWN_GROUP
from ..distillers.decoder_outputs import DecoderOutputs
from .base_component import DistillComponent
from .pair_losses import ALL_PAIR_LOSSES, build_pair_losses, pair_losses, uses_attention


@MODELS.register_module()
class AdaptiveMatchKD(DistillComponent):
    """D3ETR's adaptive matching (and DETRDistill's logits distillation).

    In every student decoder layer l, paired with teacher layer t(l) by
    :meth:`MixMatcher.layer_pairs`, the teacher's predictions (all queries, no
    threshold, sigmoid scores as soft labels) are pseudo ground truth: the
    student's own queries are Hungarian-matched to them on the matcher's
    costs, and every matched pair is distilled (see :func:`pair_losses`).

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'d3etr.adaptive'``.
        matcher (dict): Matcher config; its ``adaptive_match`` and
            ``layer_pairs`` are used. Defaults to ``MixMatcher`` (costs:
            soft-label BCE 1, L1 5, GIoU 2).
        losses (dict, optional): Pair losses merged over ``default_losses``;
            ``None`` switches one off. Keys: loss_cls, loss_bbox, loss_iou,
            loss_self_attn, loss_cross_attn. Defaults to None.
    """

    default_losses = ALL_PAIR_LOSSES

    def __init__(
        self,
        prefix: str = 'd3etr.adaptive',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=True, fixed=False),
        losses: Optional[dict] = None,
    ) -> None:
        super().__init__(prefix)
        self.matcher = TASK_UTILS.build(matcher)
        self.losses = build_pair_losses(losses, self.default_losses, f'{prefix}: losses')

    def records_attention(self) -> bool:
        return uses_attention(self.losses)

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
    ) -> Dict[str, Tensor]:
        """Pair losses of every student layer, keys ``{prefix}.d{l}.{loss}``."""
        img_metas = [s.metainfo for s in batch_data_samples]
        s_cls, s_box = student_out.group(OWN_GROUP)
        t_cls, t_box = teacher_out.group(OWN_GROUP)
        out = {}
        for s_l, t_l in self.matcher.layer_pairs(student_out.num_layers, teacher_out.num_layers):
            pairs = self.matcher.adaptive_match(
                s_cls[s_l], s_box[s_l], t_cls[t_l], t_box[t_l], img_metas
            )
            layer = pair_losses(
                self.losses, pairs, (student_out, OWN_GROUP, s_l), (teacher_out, t_l), img_metas
            )
            out.update({f'{self.prefix}.d{s_l}.{k}': v for k, v in layer.items()})
        return out
