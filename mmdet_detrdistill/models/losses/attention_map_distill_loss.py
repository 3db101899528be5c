"""Attention-map distillation: MSE between matched attention maps."""

import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class AttentionMapDistillLoss(nn.Module):
    """Mean squared error between student and teacher attention maps.

    The maps are head-averaged softmax weights already gathered for matched
    query pairs, so the rows (and, for self-attention, the columns) of the
    student map correspond one to one to those of the teacher map::

        loss = w * mean((A_s - A_t) ** 2)

    Shapes: self-attention (bs, K, K), cross-attention (bs, K, H*W) where K
    is the number of matched pairs per image. Each entry is a probability,
    hence the large default weights in D3ETR configs (1e4 self, 1e3 cross).
    Computed in fp32.

    Args:
        loss_weight (float): Weight w. Defaults to 1.0.
    """

    def __init__(self, loss_weight: float = 1.0) -> None:
        super().__init__()
        self.loss_weight = loss_weight

    def forward(self, student_attn: Tensor, teacher_attn: Tensor) -> Tensor:
        """Compute the loss (inputs of equal shape; see the class docstring)."""
        if student_attn.shape != teacher_attn.shape:
            raise ValueError(
                f'attention maps differ in shape: student {tuple(student_attn.shape)} vs '
                f'teacher {tuple(teacher_attn.shape)}. Cross-attention maps need the same '
                'feature-map size (same backbone stride and input); otherwise set the '
                'cross-attention loss to None in the distiller config.'
            )
        return self.loss_weight * F.mse_loss(student_attn.float(), teacher_attn.float())
