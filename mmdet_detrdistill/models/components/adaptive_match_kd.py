"""D3ETR (arXiv 2211.09768), Sec. 3, MixMatcher's Adaptive Matching; also DETRDistill's logits KD.

Distil each decoder layer through a Hungarian matching of teacher and student predictions.
"""

from typing import Dict, FrozenSet, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType
from torch import Tensor

from ..common import OWN_GROUP, DecoderOutputs
from ..task_modules.pairing import PairingRequest, SolvedPairings, hungarian_pairing
from .base_component import DistillComponent
from .pair_losses import ALL_PAIR_LOSSES, attention_kinds, build_pair_losses, pair_losses_by_layer


@MODELS.register_module()
class AdaptiveMatchKD(DistillComponent):
    """D3ETR's adaptive matching (and DETRDistill's logits distillation).

    In every student decoder layer l, paired with teacher layer t(l) by
    :meth:`MixMatcher.layer_pairs`, the teacher's predictions (all queries, no
    threshold, sigmoid scores as soft labels) are pseudo ground truth: the
    student's own queries are Hungarian-matched to them on the matcher's
    costs (the pairing step, :func:`hungarian_pairing`), and every matched
    pair is distilled (:func:`pair_losses`): class, L1, GIoU, self- and
    cross-attention. Keys ``{prefix}.d{l}.{loss}``.

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

    default_losses = ALL_PAIR_LOSSES

    def __init__(
        self,
        prefix: str = 'd3etr.adaptive',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=True, fixed=False),
        losses: Optional[dict] = None,
        clamp_teacher_boxes: bool = False,
    ) -> None:
        super().__init__(prefix)
        self.pairing = hungarian_pairing(matcher, clamp_teacher_boxes)
        self.matcher = self.pairing.matcher
        self.clamp_teacher_boxes = clamp_teacher_boxes
        # a distiller prefixes build errors with the component's config key
        self.losses = build_pair_losses(losses, self.default_losses, 'losses')

    def attention_kinds(self) -> FrozenSet[str]:
        return attention_kinds(self.losses)

    def all_losses_off(self) -> bool:
        return not self.losses

    def pairings(self) -> Tuple[PairingRequest, ...]:
        """The student's own queries Hungarian-matched to the teacher's, every layer."""
        return () if self.all_losses_off() else (self.pairing,)

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings,
    ) -> Dict[str, Tensor]:
        """Pair losses of every student layer, keys ``{prefix}.d{l}.{loss}``."""
        if self.all_losses_off():
            return {}
        img_metas = [s.metainfo for s in batch_data_samples]
        solved = pairs[self.pairing]  # its teacher: boxes clamped if clamp_teacher_boxes
        return self.keyed(
            pair_losses_by_layer(self.losses, solved, (student_out, OWN_GROUP), img_metas)
        )

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, clamp_teacher_boxes={self.clamp_teacher_boxes}'
