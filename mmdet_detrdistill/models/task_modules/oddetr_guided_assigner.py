"""OD-DETR's teacher-guided assignment: the student's matching cost, pulled toward the teacher's."""

from typing import List, Optional

import torch
from mmdet.models.task_modules import AssignResult, BaseAssigner
from mmdet.registry import TASK_UTILS
from mmdet.utils import ConfigType
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

from ..common import autocast_off, clamp_finite
from .query_prior_assigner import DEFAULT_ASSIGNER


@TASK_UTILS.register_module()
class ODDETRGuidedAssigner(BaseAssigner):
    """OD-DETR, Sec. 3.2: Hungarian assignment on a mix of the student's and the teacher's costs.

    Query i of the student and query i of the teacher are the same query
    (the teacher is the student's EMA, or shares its query layout). With
    ``C(p, j)`` the weighted match cost between prediction p and GT j, the
    student's query i is assigned to GT j by a Hungarian matching on::

        C_guided(i, j) = (1 - alpha) * C(student_i, j) + alpha * C(teacher_i, j)

    ``alpha = 0`` is the student's own matching, ``alpha = 1`` the teacher's
    matching result as it is. Between the two, a query the teacher matched
    to a GT is preferred for that GT, and the assignment changes less from
    one iteration to the next (the EMA changes slowly). The teacher's
    predictions are the argument ``teacher_pred_instances`` (logit
    ``scores``, pixel xyxy ``bboxes``); a DETR head takes them per image as
    :class:`BoundTeacherAssigner`. Costs are fp32; non-finite costs are
    clamped before the solver.

    Args:
        match_costs (list[dict]): Match costs. Defaults to Deformable DETR's
            (focal 2, L1 5 xywh, GIoU 2).
        alpha (float): Weight of the teacher's cost. Defaults to 0.5.
    """

    def __init__(self, match_costs: Optional[List[ConfigType]] = None, alpha: float = 0.5) -> None:
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f'{self.__class__.__name__}: alpha must be in [0, 1], got {alpha}')
        costs = DEFAULT_ASSIGNER['match_costs'] if match_costs is None else match_costs
        self.match_costs = [TASK_UTILS.build(c) if isinstance(c, dict) else c for c in costs]
        self.alpha = alpha

    def cost(self, preds: InstanceData, gt_instances: InstanceData, img_meta: dict) -> Tensor:
        """Weighted match cost, (num_preds, num_gts), fp32."""
        return sum(
            c(pred_instances=preds, gt_instances=gt_instances, img_meta=img_meta).float()
            for c in self.match_costs
        )

    def assign(
        self,
        pred_instances: InstanceData,
        gt_instances: InstanceData,
        img_meta: Optional[dict] = None,
        teacher_pred_instances: Optional[InstanceData] = None,
        **kwargs,
    ) -> AssignResult:
        """Assign GT to the student's queries on the guided cost.

        Raises:
            KeyError: There is ground truth and ``teacher_pred_instances`` is
                not given.
        """
        num_gts, num_preds = len(gt_instances), len(pred_instances)
        device = pred_instances.scores.device
        gt_inds = torch.zeros(num_preds, dtype=torch.long, device=device)
        labels = torch.full((num_preds,), -1, dtype=torch.long, device=device)
        if num_gts == 0 or num_preds == 0:
            return AssignResult(num_gts, gt_inds, None, labels=labels)
        if teacher_pred_instances is None:
            raise KeyError(
                f'{self.__class__.__name__}.assign needs teacher_pred_instances (the teacher '
                'predictions for this image); give them, or bind them with BoundTeacherAssigner'
            )
        student, teacher = _fp32(pred_instances), _fp32(teacher_pred_instances)
        with autocast_off(device):
            cost = (1 - self.alpha) * self.cost(student, gt_instances, img_meta)
            cost = cost + self.alpha * self.cost(teacher, gt_instances, img_meta)
        rows, cols = linear_sum_assignment(clamp_finite(cost).detach().cpu().numpy())
        rows = torch.as_tensor(rows, device=device, dtype=torch.long)
        cols = torch.as_tensor(cols, device=device, dtype=torch.long)
        gt_inds[rows] = cols + 1
        labels[rows] = gt_instances.labels[cols]
        return AssignResult(num_gts, gt_inds, None, labels=labels)

    def __repr__(self) -> str:
        return f'{self.__class__.__name__}(alpha={self.alpha})'


def _fp32(preds: InstanceData) -> InstanceData:
    return InstanceData(scores=preds.scores.float(), bboxes=preds.bboxes.float())
