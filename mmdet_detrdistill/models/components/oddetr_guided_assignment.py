"""OD-DETR (arXiv 2406.05791), Sec. 3.2: the student's GT assignment, guided by the teacher."""

from typing import Dict, List, Optional

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor, nn

from ..common import OWN_GROUP, DecoderOutputs, pred_instances
from ..task_modules import BoundTeacherAssigner, ODDETRGuidedAssigner
from .base_component import DistillComponent


@MODELS.register_module()
class ODDETRGuidedAssignment(DistillComponent):
    """OD-DETR, Sec. 3.2: the student's GT assignment, guided by the teacher's.

    Every student decoder layer is assigned by :class:`ODDETRGuidedAssigner`
    on ``(1 - alpha) * C(student query i, GT j) + alpha * C(teacher query i,
    GT j)``, where C is the student head's own match cost and the teacher's
    predictions are those of its *last* decoder layer (its best, and the
    same reference for every student layer). Student query i and teacher
    query i must be the same query. With learned queries they are (the
    teacher is the student's EMA). A two-stage Deformable DETR's query i is
    each model's own i-th encoder proposal, so the teacher's outputs for its
    own queries would guide unrelated student queries: the teacher must
    decode the *student's* proposals (:class:`ODDETRDistiller` does, and
    gives them as ``teacher_on_student_queries``); other distillers are
    refused on the first step. The student's losses are mmdet's; only their
    assignment changes. It adds no loss of its own.

    Args:
        prefix (str): Name in logs. Defaults to ``'oddetr.guided'``.
        alpha (float): Weight of the teacher's cost, in [0, 1]. Defaults to 0.5.
    """

    overrides_gt_assignment = True

    def __init__(self, prefix: str = 'oddetr.guided', alpha: float = 0.5) -> None:
        super().__init__(prefix)
        self.alpha = alpha

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        if student.num_queries != teacher.num_queries:
            raise ValueError(
                f'{self.config_keys.config}: teacher-guided assignment pairs student query i '
                f'with teacher query i, but the student has {student.num_queries} queries and '
                f'the teacher {teacher.num_queries}; give both the same num_queries or switch it '
                f'off ({self.config_keys.switch_off})'
            )
        super().bind(student, teacher)
        self.assigner = ODDETRGuidedAssigner(student.bbox_head.assigner.match_costs, self.alpha)
        #: the student's queries are its own per-image proposals (two-stage)
        self.queries_are_proposals = bool(getattr(student, 'as_two_stage', False))

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
        guide = teacher_on_student_queries if self.queries_are_proposals else teacher_out
        if self.queries_are_proposals and guide is None:
            raise ValueError(
                f"{self.config_keys.config}: a two-stage student's query i is its own i-th "
                "encoder proposal, and this distiller's teacher decodes its own proposals, so the "
                "guidance would mix unrelated queries. Use type='ODDETRDistiller' (its teacher "
                "decodes the student's proposals), a student with as_two_stage=False, or switch "
                f'it off ({self.config_keys.switch_off}).'
            )
        t_cls, t_box = guide.group(OWN_GROUP)
        preds = pred_instances(t_cls[-1].detach(), t_box[-1].detach(), img_metas)
        return [BoundTeacherAssigner(self.assigner, p) for p in preds]

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
    ) -> Dict[str, Tensor]:
        return {}

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, alpha={self.alpha}'
