"""OD-DETR's teacher-guided assignment of the student's own queries."""

from typing import Dict, List, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from torch import Tensor, nn

from ..detectors import OWN_GROUP
from ..distillers.decoder_outputs import DecoderOutputs
from ..layers.head_assignment import pred_instances
from ..task_modules import TEACHER_PREDS_KEY, TeacherGuidedAssigner
from .base_component import DistillComponent


@MODELS.register_module()
class TeacherGuidedAssignment(DistillComponent):
    """OD-DETR, Sec. 3.2: the student's GT assignment, guided by the teacher's.

    Every student decoder layer is assigned by :class:`TeacherGuidedAssigner`
    on ``(1 - alpha) * C(student query i, GT j) + alpha * C(teacher query i,
    GT j)``, where C is the student head's own match cost and the teacher's
    predictions are those of its *last* decoder layer (its best, and the
    same reference for every student layer). Student query i and teacher
    query i must be the same query: the teacher is the student's EMA. The
    student's losses are mmdet's; only their assignment changes. It adds no
    loss of its own.

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
                f'{self.prefix}: teacher-guided assignment pairs student query i with teacher '
                f'query i, but the student has {student.num_queries} queries and the teacher '
                f'{teacher.num_queries}'
            )
        super().bind(student, teacher)
        self.assigner = TeacherGuidedAssigner(student.bbox_head.assigner.match_costs, self.alpha)

    def gt_assigner(
        self, teacher_out: Optional[DecoderOutputs], img_metas: List[dict]
    ) -> Optional[Tuple[TeacherGuidedAssigner, List[dict]]]:
        """The guided assigner, and metas carrying the teacher's last-layer predictions."""
        t_cls, t_box = teacher_out.group(OWN_GROUP)
        preds = pred_instances(t_cls[-1].detach(), t_box[-1].detach(), img_metas)
        return self.assigner, [{**m, TEACHER_PREDS_KEY: p} for m, p in zip(img_metas, preds)]

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
    ) -> Dict[str, Tensor]:
        return {}

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, alpha={self.alpha}'
