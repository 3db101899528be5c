"""OD-DETR, blended variant: the student's GT assignment on a cost blended with the teacher's."""

from typing import Dict, List, Optional

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor, nn

from ..common import OWN_GROUP, DecoderOutputs, pred_instances
from ..task_modules import BoundTeacherAssigner, ODDETRGuidedAssigner
from ..task_modules.pairing import SolvedPairings
from .base_component import NO_PAIRS, DistillComponent
from .query_twins import check_same_num_queries, queries_are_proposals, teacher_twins


@MODELS.register_module()
class ODDETRGuidedAssignment(DistillComponent):
    """OD-DETR's teacher-guided assignment as one matching on a blended cost (a variant).

    Not the paper's mechanism (:class:`ODDETRMatchingDistillation`, the
    default): kept for the ablation, and the default before 2026-12
    (``guided_assignment=dict(type='ODDETRGuidedAssignment', alpha=0.5)``).

    Every student decoder layer is assigned by :class:`ODDETRGuidedAssigner`
    on ``(1 - alpha) * C(student query i, GT j) + alpha * C(teacher query i,
    GT j)``, where C is the student head's own match cost and the teacher's
    predictions are those of its *last* decoder layer (its best, and the
    same reference for every student layer). Student query i and teacher
    query i must be the same query (:mod:`.query_twins`: on a two-stage
    student, the teacher's outputs for the student's proposals,
    ``teacher_on_student_queries``, which :class:`ODDETRDistiller` gives;
    other distillers are refused on the first step). The student's losses are
    mmdet's; only their assignment changes. It adds no loss of its own.

    Args:
        prefix (str): Name in logs. Defaults to ``'oddetr.guided'``.
        alpha (float): Weight of the teacher's cost, in [0, 1]. Defaults to 0.5.
    """

    overrides_gt_assignment = True

    def __init__(self, prefix: str = 'oddetr.guided', alpha: float = 0.5) -> None:
        super().__init__(prefix)
        self.alpha = alpha

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        check_same_num_queries(self.config_keys, student, teacher)
        super().bind(student, teacher)
        self.assigner = ODDETRGuidedAssigner(student.bbox_head.assigner.match_costs, self.alpha)
        #: the student's queries are its own per-image proposals (two-stage)
        self.queries_are_proposals = queries_are_proposals(student)

    def gt_assigners(
        self,
        teacher_out: Optional[DecoderOutputs],
        img_metas: List[dict],
        teacher_on_student_queries: Optional[DecoderOutputs] = None,
    ) -> List[BoundTeacherAssigner]:
        """Per image, the guided assigner bound to the teacher's last-layer predictions
        for the student's queries: ``teacher_out`` (learned queries, the same in both
        models), or ``teacher_on_student_queries`` on a two-stage student.

        Raises:
            ValueError: The student is two-stage and ``teacher_on_student_queries``
                is not given.
        """
        guide = teacher_twins(
            self.config_keys, self.queries_are_proposals, teacher_out, teacher_on_student_queries
        )
        t_cls, t_box = guide.group(OWN_GROUP)
        preds = pred_instances(t_cls[-1].detach(), t_box[-1].detach(), img_metas)
        return [BoundTeacherAssigner(self.assigner, p) for p in preds]

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings = NO_PAIRS,
    ) -> Dict[str, Tensor]:
        return {}

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, alpha={self.alpha}'
