"""DETRDistill (arXiv 2211.10156), Sec. 3.4: query-prior assignment (teacher queries, matching)."""

import dataclasses
from typing import Dict, List, Optional, Union

from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType
from torch import Tensor, nn

from ..common import (
    OWN_GROUP,
    TEACHER_QUERY_GROUP,
    DecoderOutputs,
    QueryGroup,
    autocast_off,
    pred_instances,
)
from ..dense_heads import LOSS_NAMES
from ..task_modules import BoundTeacherAssigner, MixMatcher, QueryPriorAssigner
from ..task_modules.pairing import SolvedPairings
from .base_component import NO_PAIRS, DistillComponent
from .fixed_match_kd import check_same_query_format, teacher_query_group

#: where the query-prior group's reference points come from (see QueryPriorAssignment)
REFERENCE_POINTS = ('student', 'teacher')


@MODELS.register_module()
class QueryPriorAssignment(DistillComponent):
    """DETRDistill, Sec. 3.4: the teacher's queries as a prior for the student.

    The teacher's queries (as they entered its decoder) run through the
    student's decoder as the isolated group ``'teacher_queries'`` (shared
    with D3ETR's fixed matching when both are on); what the student's family
    derives from them before the decoder is derived by the student's layers
    (:func:`teacher_query_group`), as in the official code, where the
    teacher's ``query_embedding`` goes through the student's transformer and
    its ``reference_points`` layer (one-stage Deformable DETR). In every
    student layer l, the group is supervised with the ground truth by the
    student head's own losses, but under the *teacher's* Hungarian assignment
    of its layer t(l) (:class:`QueryPriorAssigner`, given the teacher's
    predictions of that layer as an argument; no new matching): query i
    learns the object teacher query i found. Training only.

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'detrdistill.query_prior'``.
        assigner (dict, optional): ``QueryPriorAssigner`` config. Defaults
            to None: the teacher head's own assigner, wrapped.
        loss_weight (float): Multiplies the head's losses (Deformable DETR's
            head: focal 2, L1 5, GIoU 2, the paper's weights). Defaults to 1.0.
        reference_points (str): ``'student'``: what the student derives from
            the teacher's queries is derived by its own layers, as the official
            code does (the default); ``'teacher'``: the teacher's reference
            points as they are, so no student layer learns from them (this
            package before 2026-12-07; kept for the ablation of issue #32,
            item 5). Differs from ``'student'`` on one-stage Deformable DETR
            only. Defaults to ``'student'``.
    """

    def __init__(
        self,
        prefix: str = 'detrdistill.query_prior',
        assigner: Optional[ConfigType] = None,
        loss_weight: float = 1.0,
        reference_points: str = 'student',
    ) -> None:
        super().__init__(prefix)
        if reference_points not in REFERENCE_POINTS:
            raise ValueError(
                f'{prefix}: reference_points={reference_points!r}; choose one of '
                f'{", ".join(map(repr, REFERENCE_POINTS))}'
            )
        self.assigner_cfg = assigner
        self.loss_weight = loss_weight
        self.reference_points = reference_points

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        check_same_query_format(student, teacher, self)
        super().bind(student, teacher)
        self.assigner: Union[QueryPriorAssigner, object] = (
            QueryPriorAssigner(teacher.bbox_head.assigner)
            if self.assigner_cfg is None
            else TASK_UTILS.build(self.assigner_cfg)
        )

    def query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        if self.reference_points == 'teacher':
            return [dataclasses.replace(teacher_out.own_queries, name=TEACHER_QUERY_GROUP)]
        return [teacher_query_group(teacher_out, self.student)]

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings = NO_PAIRS,
    ) -> Dict[str, Tensor]:
        """Head losses of the group per layer, keys ``{prefix}.d{l}.{loss}``."""
        gt_instances = [s.gt_instances for s in batch_data_samples]
        img_metas = [s.metainfo for s in batch_data_samples]
        s_cls, s_box = student_out.group(TEACHER_QUERY_GROUP)
        t_cls, t_box = teacher_out.group(OWN_GROUP)
        head = self.student.bbox_head
        out = {}
        for s_l, t_l in MixMatcher.layer_pairs(student_out.num_layers, teacher_out.num_layers):
            teacher_preds = pred_instances(
                t_cls[t_l].detach().float(), t_box[t_l].detach().float(), img_metas
            )
            assigners = [BoundTeacherAssigner(self.assigner, p) for p in teacher_preds]
            with autocast_off(s_cls):
                losses = head.loss_by_feat_single(
                    s_cls[s_l].float(), s_box[s_l].float(), gt_instances, img_metas, assigners
                )
            for name, value in zip(LOSS_NAMES, losses):
                out[f'{self.prefix}.d{s_l}.{name}'] = self.loss_weight * value
        return out

    def extra_repr(self) -> str:
        return (
            f'{super().extra_repr()}, loss_weight={self.loss_weight}, '
            f'reference_points={self.reference_points!r}'
        )
