"""OD-DETR (arXiv 2406.05791), the initial-query constraint (the second of its three parts).

The teacher's initial queries run in the student; their boxes are weighted by how confident
the teacher is.
"""

import dataclasses
from typing import Dict, FrozenSet, List, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import ConfigType
from torch import Tensor, nn

from ..common import (
    OWN_GROUP,
    TEACHER_QUERY_GROUP,
    DecoderOutputs,
    QueryGroup,
    gather_queries,
    pixel_scale,
)
from ..task_modules.pairing import PairingRequest, Pairs, SolvedPairings, index_pairing
from .base_component import DistillComponent
from .fixed_match_kd import check_same_query_format, teacher_query_group
from .pair_losses import attention_kinds, build_pair_losses, pair_losses_by_layer

BOX_LOSSES = ('loss_bbox', 'loss_iou')
BOX_WEIGHTINGS = ('uniform', 'teacher_confidence')
# smaller box weights than D3ETR's fixed matching (L1 5, GIoU 2): between a model and its own
# EMA, those collapsed the tiny student (see ODDETRDistiller)
INITIAL_QUERY_LOSSES = dict(
    loss_cls=dict(type='BinaryKLDistillLoss', loss_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=1.0),
    loss_iou=dict(type='GIoULoss', loss_weight=0.5),
)


def teacher_confidence(teacher_logits: Tensor, score_thr: float = 0.0) -> Tensor:
    """Per-query weight ``w = max_c sigmoid(z_c)``, 0 where ``w < score_thr``.

    Args:
        teacher_logits (Tensor): Teacher class logits, (..., num_classes).
        score_thr (float): Confidences below it weigh 0. Defaults to 0.

    Returns:
        Tensor: (...), in [0, 1], detached.
    """
    conf = teacher_logits.detach().float().sigmoid().max(-1).values
    return conf * (conf >= score_thr)


def most_confident(teacher_logits: Tensor, k: int) -> Tensor:
    """Per image, the k queries of highest max class probability, in query order.

    Args:
        teacher_logits (Tensor): (bs, N, num_classes).
        k (int): Queries kept, ``k <= N``.

    Returns:
        Tensor: Long (bs, k), ascending.
    """
    return teacher_confidence(teacher_logits).topk(k, dim=-1).indices.sort(-1).values


@MODELS.register_module()
class InitialQueryKD(DistillComponent):
    """OD-DETR's initial-query constraint (arXiv 2406.05791, "initial query" distillation).

    The EMA teacher's initial queries run through the student's decoder as the
    isolated group ``'teacher_queries'`` (:func:`teacher_query_group`, as
    D3ETR's fixed matching); in every student layer l, query i of the group is
    paired with teacher query i of layer t(l) (the pairing step,
    :func:`index_pairing`) and its predictions are constrained to the teacher's:

    * classes: soft-label BCE on the student's logits against the teacher's
      probabilities, mean over pairs (:func:`pair_losses`);
    * boxes (``loss_bbox``: L1 on normalised cxcywh, ``loss_iou``: GIoU on
      pixel xyxy), each pair weighted by ``w_i``::

          L_box = sum_i w_i * l(b_s_i, b_t_i) / K        (K pairs of the layer)

      ``box_weighting='teacher_confidence'``: ``w_i`` is the teacher's max
      class probability for query i, 0 below ``score_thr``
      (:func:`teacher_confidence`): a box the teacher does not believe in is
      not a target, and early on, while the EMA is unsure of every box, the
      box terms are near zero; ``'uniform'``: ``w_i = 1``.

    ``num_queries=K`` (not the paper's, which gives the student every
    initial query; a cheaper variant for many-query teachers such as DINO's
    900): the group keeps, per image, the K teacher queries the teacher is
    most confident of at its last layer (:func:`most_confident`), in their
    order, and query k is paired with the teacher query it is
    (:meth:`QueryGroup.take`). The group's decoder cost scales with K.

    Gradients reach the student only (the teacher's outputs and the weights
    are detached). These defaults are OD-DETR's since 2026-11-30 (see
    :class:`ODDETRDistiller`); class scores only: ``losses=dict(loss_bbox=None,
    loss_iou=None)``.

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'oddetr.init_query'``.
        matcher (dict): Matcher config, for ``layer_pairs``/``fixed_match``.
            Defaults to ``MixMatcher``.
        losses (dict, optional): Merged over ``loss_cls`` binary KL 1,
            ``loss_bbox`` L1 1, ``loss_iou`` GIoU 0.5; ``None`` switches one
            off. Defaults to None.
        box_weighting (str): ``'teacher_confidence'`` or ``'uniform'``.
            Defaults to ``'teacher_confidence'``.
        score_thr (float): With ``'teacher_confidence'``, pairs whose teacher
            confidence is below it weigh 0. Defaults to 0.
        num_queries (int, optional): Keep the teacher's ``num_queries`` most
            confident initial queries per image. Defaults to None (all of them,
            as the paper).
    """

    default_losses = INITIAL_QUERY_LOSSES

    def __init__(
        self,
        prefix: str = 'oddetr.init_query',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=False, fixed=True),
        losses: Optional[dict] = None,
        box_weighting: str = 'teacher_confidence',
        score_thr: float = 0.0,
        num_queries: Optional[int] = None,
    ) -> None:
        super().__init__(prefix)
        if num_queries is not None and (
            not isinstance(num_queries, int) or isinstance(num_queries, bool) or num_queries < 1
        ):
            raise ValueError(
                f'{prefix}: num_queries must be a positive int (the teacher initial queries '
                'kept per image) or None (all of them); got '
                f'{num_queries!r}: set model.init_query.num_queries (OD-DETR)'
            )
        self.num_queries = num_queries
        self.pairing = index_pairing(matcher, TEACHER_QUERY_GROUP)
        self.matcher = self.pairing.matcher
        self.losses = build_pair_losses(losses, self.default_losses, 'losses')
        if box_weighting not in BOX_WEIGHTINGS:
            raise ValueError(
                f'{prefix}: box_weighting={box_weighting!r} is not one of {BOX_WEIGHTINGS}; '
                "set the component's box_weighting (OD-DETR: model.init_query.box_weighting) to "
                "'teacher_confidence' or 'uniform'"
            )
        self.box_weighting = box_weighting
        self.score_thr = score_thr
        # box terms are computed here, weighted; the rest by pair_losses
        self.box_losses = nn.ModuleDict(
            {k: self.losses.pop(k) for k in BOX_LOSSES if k in self.losses}
        )

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        check_same_query_format(student, teacher, self)
        super().bind(student, teacher)

    def attention_kinds(self) -> FrozenSet[str]:
        return attention_kinds(self.losses)

    def all_losses_off(self) -> bool:
        return not (self.losses or self.box_losses)

    def query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        if self.all_losses_off():
            return []
        group = teacher_query_group(teacher_out, self.student)
        if self.num_queries is None or self.num_queries >= group.num_queries:
            return [group]
        last_logits = teacher_out.group(OWN_GROUP)[0][-1]  # (bs, Nt, C)
        return [group.take(most_confident(last_logits, self.num_queries))]

    def pairings(self) -> Tuple[PairingRequest, ...]:
        """Query i of the teacher-query group with the teacher query it is, every layer."""
        return () if self.all_losses_off() else (self.pairing,)

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings,
    ) -> Dict[str, Tensor]:
        """Class (and attention) pair losses, then the weighted box losses, keys
        ``{prefix}.d{l}.{loss}``."""
        if self.all_losses_off():
            return {}
        img_metas = [s.metainfo for s in batch_data_samples]
        solved = pairs[self.pairing]
        # targets only, even where the teacher ran with autograd on
        teacher = dataclasses.replace(
            solved.teacher,
            cls_scores=solved.teacher.cls_scores.detach(),
            bbox_preds=solved.teacher.bbox_preds.detach(),
        )
        solved = dataclasses.replace(solved, teacher=teacher)
        student = (student_out, TEACHER_QUERY_GROUP)
        out = self.keyed(pair_losses_by_layer(self.losses, solved, student, img_metas))
        if self.box_losses:
            box = {
                s_l: self.box_pair_losses(layer, (student_out, s_l), (teacher, t_l), img_metas)
                for s_l, t_l, layer in solved.layers
            }
            out.update(self.keyed(box))
        return out

    def box_pair_losses(
        self,
        pairs: Pairs,
        student: Tuple[DecoderOutputs, int],
        teacher: Tuple[DecoderOutputs, int],
        img_metas: List[dict],
    ) -> Dict[str, Tensor]:
        """Weighted box losses of one layer's pairs (student layer, teacher layer)."""
        (s_out, s_l), (t_out, t_l) = student, teacher
        s_idx, t_idx = pairs
        s_box = s_out.group(TEACHER_QUERY_GROUP)[1][s_l]
        s_box = gather_queries(s_box, s_idx).float()  # (bs, K, 4)
        t_cls, t_box = (gather_queries(x[t_l], t_idx) for x in t_out.group(OWN_GROUP))
        t_box = t_box.detach().float()
        if self.box_weighting == 'teacher_confidence':
            weight = teacher_confidence(t_cls, self.score_thr)  # (bs, K)
        else:
            weight = t_box.new_ones(t_box.shape[:2])
        num_pairs = max(s_idx.numel(), 1)
        out = {}
        if 'loss_bbox' in self.box_losses:
            out['loss_bbox'] = self.box_losses['loss_bbox'](
                s_box.flatten(0, 1),
                t_box.flatten(0, 1),
                weight=weight.flatten()[:, None].expand(-1, 4),
                avg_factor=num_pairs,
            )
        if 'loss_iou' in self.box_losses:
            scale = pixel_scale(s_box, img_metas)
            out['loss_iou'] = self.box_losses['loss_iou'](
                (bbox_cxcywh_to_xyxy(s_box) * scale).flatten(0, 1),
                (bbox_cxcywh_to_xyxy(t_box) * scale).flatten(0, 1),
                weight=weight.flatten(),
                avg_factor=num_pairs,
            )
        return out

    def extra_repr(self) -> str:
        return (
            f'{super().extra_repr()}, box_weighting={self.box_weighting!r}, '
            f'num_queries={self.num_queries}'
        )
