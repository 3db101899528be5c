"""An assigner that needs the teacher's predictions, given them for one image."""

from typing import Optional

from mmdet.models.task_modules import AssignResult, BaseAssigner
from mmengine.structures import InstanceData


class BoundTeacherAssigner(BaseAssigner):
    """``assigner`` with one image's teacher predictions passed to every ``assign``.

    :class:`QueryPriorAssigner` and :class:`ODDETRGuidedAssigner` take the
    teacher's predictions as the argument ``teacher_pred_instances``; a DETR
    head calls ``assign(pred_instances, gt_instances, img_meta)``. Binding
    one image's predictions gives the head an assigner for that image
    (the heads of ``models/dense_heads`` give image b the b-th of a list).

    Args:
        assigner (BaseAssigner): An assigner whose ``assign`` takes
            ``teacher_pred_instances``.
        teacher_pred_instances (InstanceData): The teacher's predictions for
            this image: ``scores`` class logits (N, C), ``bboxes`` pixel xyxy
            (N, 4) (:func:`pred_instances`, the layout DETR heads give
            assigners).
    """

    def __init__(self, assigner: BaseAssigner, teacher_pred_instances: InstanceData) -> None:
        self.assigner = assigner
        self.teacher_pred_instances = teacher_pred_instances

    def assign(
        self,
        pred_instances: InstanceData,
        gt_instances: InstanceData,
        img_meta: Optional[dict] = None,
        **kwargs,
    ) -> AssignResult:
        """``assigner.assign`` with this image's teacher predictions."""
        return self.assigner.assign(
            pred_instances,
            gt_instances,
            img_meta=img_meta,
            teacher_pred_instances=self.teacher_pred_instances,
            **kwargs,
        )

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}({self.assigner!r})'
