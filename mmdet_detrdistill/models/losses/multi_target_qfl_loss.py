"""OD-DETR's class loss for queries with several targets: a multi-target quality focal loss.

OD-DETR (arXiv 2406.05791, Sec. 3, *matching distillation*): a student query learns from the
GT box it is matched to and from the one its EMA twin is matched to, its classification by a
multi-target quality focal loss. QFL: Li et al., Generalized Focal Loss (arXiv 2006.04388).
"""

import torch
import torch.nn.functional as F
from mmdet.models.losses.utils import weight_reduce_loss
from mmdet.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class MultiTargetQualityFocalLoss(nn.Module):
    """Quality focal loss whose soft targets come from every (query, GT) pair of a query.

    The targets are P (query, GT) pairs, pair p giving query ``q_p`` the class
    ``c_p`` with the quality ``s_p`` in [0, 1] (OD-DETR: the IoU of the query's
    box with that GT, detached, times the pair's weight). The soft target of
    query i and class c is the best quality among the query's pairs of that
    class, 0 without one (background)::

        y[i, c] = max({s_p : q_p = i, c_p = c} | {0})
        loss = w / avg_factor * sum_{i, c} |y[i, c] - sigmoid(x[i, c])|^beta
                                           * BCE(x[i, c], y[i, c])

    With at most one pair per query this is mmdet's ``QualityFocalLoss``
    (sigmoid, same beta), term for term. Computed in fp32.

    Args:
        beta (float): Focusing exponent. Defaults to 2.0.
        loss_weight (float): Weight w. Defaults to 1.0.
    """

    def __init__(self, beta: float = 2.0, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.beta = beta
        self.loss_weight = loss_weight

    @staticmethod
    def soft_targets(
        num_queries: int,
        num_classes: int,
        target_queries: Tensor,
        target_labels: Tensor,
        target_quality: Tensor,
    ) -> Tensor:
        """The soft targets y, (num_queries, num_classes): per (query, class), the best
        quality of its pairs, 0 without one."""
        y = target_quality.new_zeros(num_queries * num_classes, dtype=torch.float32)
        flat = target_queries * num_classes + target_labels
        y.scatter_reduce_(0, flat, target_quality.float(), reduce='amax', include_self=True)
        return y.view(num_queries, num_classes)

    def forward(
        self,
        cls_scores: Tensor,
        target_queries: Tensor,
        target_labels: Tensor,
        target_quality: Tensor,
        avg_factor: float,
    ) -> Tensor:
        """Compute the loss.

        Args:
            cls_scores (Tensor): The student's logits x, (N, C).
            target_queries (Tensor): Each pair's query q_p in [0, N), (P,) long.
            target_labels (Tensor): Each pair's class c_p in [0, C), (P,) long.
            target_quality (Tensor): Each pair's quality s_p in [0, 1], (P,); not
                differentiated.
            avg_factor (float): Normaliser (OD-DETR: the weighted number of pairs).

        Returns:
            Tensor: Scalar loss.
        """
        logits = cls_scores.float()
        y = self.soft_targets(*logits.shape, target_queries, target_labels, target_quality.detach())
        bce = F.binary_cross_entropy_with_logits(logits, y, reduction='none')
        focus = (y - logits.sigmoid()).abs().pow(self.beta)
        per_query = (bce * focus).sum(dim=1)
        return self.loss_weight * weight_reduce_loss(per_query, avg_factor=avg_factor)

    def extra_repr(self) -> str:
        return f'beta={self.beta}, loss_weight={self.loss_weight}'
