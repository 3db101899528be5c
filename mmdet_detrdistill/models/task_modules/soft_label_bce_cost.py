"""Soft-label binary cross-entropy match cost (teacher scores as soft labels)."""

from typing import Optional, Union

from mmdet.models.task_modules.assigners.match_cost import BaseMatchCost
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData
from torch import Tensor

from ..common import soft_label_bce_cost


@TASK_UTILS.register_module()
class SoftLabelBCECost(BaseMatchCost):
    """Cost of predicting a target's *soft* class scores with sigmoid logits.

    For prediction i with logits x_i (C classes) and target j with soft labels
    p_j in [0, 1] (e.g. a teacher's sigmoid scores)::

        cost[i, j] = sum_c BCEWithLogits(x_ic, p_jc)
                   = sum_c softplus(x_ic) - (x @ p^T)[i, j]

    computed with one matrix product, no (N, M, C) tensor
    (:func:`~mmdet_detrdistill.models.common.soft_label_bce_cost`). Usable in any mmdet
    assigner's ``match_costs``: it reads ``pred_instances.scores`` (logits,
    shape (N, C)) and ``gt_instances.scores`` (soft labels, shape (M, C)).

    Args:
        weight (float): Cost weight. Defaults to 1.
    """

    def __init__(self, weight: Union[float, int] = 1.0) -> None:
        super().__init__(weight=weight)

    def __call__(
        self,
        pred_instances: InstanceData,
        gt_instances: InstanceData,
        img_meta: Optional[dict] = None,
        **kwargs,
    ) -> Tensor:
        """Return the cost matrix, shape (num_preds, num_targets)."""
        cost = soft_label_bce_cost(pred_instances.scores, gt_instances.scores)  # (N, M)
        return cost * self.weight
