"""Assign ground truth to student queries the way the teacher assigned its own."""

from typing import Optional, Union

from mmdet.models.task_modules import AssignResult, BaseAssigner
from mmdet.registry import TASK_UTILS
from mmdet.utils import ConfigType
from mmengine.structures import InstanceData

TEACHER_PREDS_KEY = 'teacher_pred_instances'
DEFAULT_ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0),
    ],
)


@TASK_UTILS.register_module()
class TeacherAssistedAssigner(BaseAssigner):
    """DETRDistill's query-prior assignment: the teacher's matching, reused.

    Student queries that came from teacher queries (query i of the group is
    teacher query i) get the ground truth the *teacher's own* Hungarian
    matching gave teacher query i: ``assign`` runs ``assigner`` on the
    teacher's predictions and ignores the student's.

    The teacher's predictions reach it, per image, as ``img_meta[
    'teacher_pred_instances']`` (``InstanceData`` with ``scores``: class
    logits (N, C) and ``bboxes``: pixel xyxy (N, 4), the layout mmdet's DETR
    heads give assigners), so a DETR head uses it unchanged as its
    ``assigner``.

    Args:
        assigner (dict | BaseAssigner): The teacher's assigner. Defaults to a
            HungarianAssigner with Deformable DETR's costs (focal 2, L1 5,
            GIoU 2).
    """

    def __init__(self, assigner: Union[ConfigType, BaseAssigner] = DEFAULT_ASSIGNER) -> None:
        self.assigner = TASK_UTILS.build(assigner) if isinstance(assigner, dict) else assigner

    def assign(
        self,
        pred_instances: InstanceData,
        gt_instances: InstanceData,
        img_meta: Optional[dict] = None,
        **kwargs,
    ) -> AssignResult:
        """The teacher's assignment of ``gt_instances`` to its queries."""
        teacher = (img_meta or {}).get(TEACHER_PREDS_KEY)
        if teacher is None:
            raise KeyError(
                f'TeacherAssistedAssigner needs the teacher predictions in '
                f"img_meta['{TEACHER_PREDS_KEY}'] (a distiller component adds them)"
            )
        if len(teacher) != len(pred_instances):
            raise ValueError(
                f'TeacherAssistedAssigner: {len(pred_instances)} student queries but '
                f'{len(teacher)} teacher predictions; query i must be teacher query i'
            )
        return self.assigner.assign(teacher, gt_instances, img_meta=img_meta, **kwargs)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(assigner={self.assigner.__class__.__name__})'
