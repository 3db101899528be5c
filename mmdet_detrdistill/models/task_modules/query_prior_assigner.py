"""DETRDistill's query-prior assignment: the teacher's own matching, reused for the student."""

from typing import Optional, Union

from mmdet.models.task_modules import AssignResult, BaseAssigner
from mmdet.registry import TASK_UTILS
from mmdet.utils import ConfigType
from mmengine.structures import InstanceData

DEFAULT_ASSIGNER = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0),
    ],
)


@TASK_UTILS.register_module()
class QueryPriorAssigner(BaseAssigner):
    """DETRDistill, Sec. 3.4: the teacher's matching, reused for the student.

    Student queries that came from teacher queries (query i of the group is
    teacher query i) get the ground truth the *teacher's own* Hungarian
    matching gave teacher query i: ``assign`` runs ``assigner`` on the
    teacher's predictions and ignores the student's.

    The teacher's predictions are the argument ``teacher_pred_instances``
    (``InstanceData`` with ``scores``: class logits (N, C) and ``bboxes``:
    pixel xyxy (N, 4), the layout mmdet's DETR heads give assigners). A DETR
    head takes it per image as :class:`BoundTeacherAssigner`.

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
        teacher_pred_instances: Optional[InstanceData] = None,
        **kwargs,
    ) -> AssignResult:
        """The teacher's assignment of ``gt_instances`` to its queries.

        Raises:
            KeyError: ``teacher_pred_instances`` is not given.
            ValueError: Student and teacher have different numbers of queries.
        """
        if teacher_pred_instances is None:
            raise KeyError(
                f'{self.__class__.__name__}.assign needs teacher_pred_instances (the teacher '
                'predictions for this image); give them, or bind them with BoundTeacherAssigner'
            )
        if len(teacher_pred_instances) != len(pred_instances):
            raise ValueError(
                f'{self.__class__.__name__}: {len(pred_instances)} student queries but '
                f'{len(teacher_pred_instances)} teacher predictions; query i must be teacher '
                'query i'
            )
        return self.assigner.assign(
            teacher_pred_instances, gt_instances, img_meta=img_meta, **kwargs
        )

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(assigner={self.assigner.__class__.__name__})'
