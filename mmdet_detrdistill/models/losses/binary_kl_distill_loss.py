"""Class-score distillation: binary KL between teacher and student sigmoids.

D3ETR (arXiv 2211.09768, Sec. 3) and DETRDistill (arXiv 2211.10156, Sec. 3.2) distil class
scores with BCE against the teacher's sigmoid scores; this is that loss less the teacher's
entropy.
"""

from typing import Optional

import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class BinaryKLDistillLoss(nn.Module):
    """Distil per-class sigmoid scores of matched query pairs.

    D3ETR and DETRDistill train the student's logits x_s with binary
    cross-entropy against the teacher's sigmoid scores p_t = sigmoid(x_t).
    This loss subtracts the teacher's own entropy, a constant for the
    student, which leaves the gradient unchanged and makes the loss the binary
    KL divergence, exactly zero when student and teacher agree::

        loss = w / avg_factor * sum_{k, c} [BCE(x_s[k, c], p_t[k, c])
                                            - BCE(x_t[k, c], p_t[k, c])]

    Computed in fp32.

    Args:
        loss_weight (float): Weight w. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(
        self,
        student_logits: Tensor,
        teacher_logits: Tensor,
        avg_factor: Optional[float] = None,
    ) -> Tensor:
        """Compute the loss.

        Args:
            student_logits (Tensor): (K, C) logits of matched student queries.
            teacher_logits (Tensor): (K, C) logits of their teacher queries.
            avg_factor (float, optional): Normaliser; defaults to K (mean
                over pairs, sum over classes).

        Returns:
            Tensor: Scalar loss.
        """
        student_logits, teacher_logits = student_logits.float(), teacher_logits.float()
        soft_labels = teacher_logits.sigmoid()
        kl = F.binary_cross_entropy_with_logits(
            student_logits, soft_labels, reduction='none'
        ) - F.binary_cross_entropy_with_logits(teacher_logits, soft_labels, reduction='none')
        avg_factor = max(student_logits.shape[0], 1) if avg_factor is None else avg_factor
        return self.loss_weight * kl.sum() / avg_factor
