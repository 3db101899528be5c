"""Contrastive (InfoNCE) distillation between matched student and teacher embeddings."""

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn


@MODELS.register_module()
class InfoNCEDistillLoss(nn.Module):
    """InfoNCE between paired embeddings: each teacher embedding picks its student.

    DETRDistill's official headline config trains this term next to the three
    of the paper (``MoCoCLHead`` in BIVLab-USTC/DETRDistill,
    ``project/mmdet/models/cl_heads/moco_cl_head.py``, used by
    ``project/mmdet/distillation/distillers/distiller.py``). Row k of the
    student and of the teacher are a matched pair; the other student rows of
    the same group are the negatives. With ``s``, ``t`` L2-normalised::

        logits[g, i, j] = <t[g, i], s[g, j]> / T                 (G, K, K)
        loss = w * mean_{g, i} CE(logits[g, i], i)
             = w * mean_{g, i} -log softmax_j(logits[g, i, j])[j = i]

    The teacher rows are the anchors and the student rows the candidates, as
    in the official code (``logits = pts_feats @ img_feats.T``, its second
    argument being the teacher's). Computed in fp32. The loss is
    ``log K`` when the embeddings carry no information and tends to zero as
    each pair aligns and the pairs spread apart.

    Args:
        temperature (float): T. Defaults to 0.07 (the official ``T``).
        loss_weight (float): w. Defaults to 1.0.
    """

    def __init__(self, temperature: float = 0.07, loss_weight: float = 1.0) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f'InfoNCEDistillLoss: temperature must be > 0, got {temperature}')
        self.temperature = temperature
        self.loss_weight = loss_weight

    def forward(self, student_embeds: Tensor, teacher_embeds: Tensor) -> Tensor:
        """Compute the loss.

        Args:
            student_embeds (Tensor): (G, K, D) projected student embeddings;
                G groups (images, or one group for a whole batch) of K rows.
            teacher_embeds (Tensor): (G, K, D) projected teacher embeddings,
                row k paired with student row k.

        Returns:
            Tensor: Scalar loss (zero when K == 0).
        """
        if student_embeds.shape != teacher_embeds.shape:
            raise ValueError(
                f'InfoNCEDistillLoss pairs rows one to one: student {tuple(student_embeds.shape)}'
                f' vs teacher {tuple(teacher_embeds.shape)}'
            )
        num_groups, num_rows = student_embeds.shape[:2]
        if num_groups * num_rows == 0:
            return student_embeds.float().sum() * 0.0
        s = F.normalize(student_embeds.float(), dim=-1)
        t = F.normalize(teacher_embeds.float(), dim=-1)
        logits = torch.einsum('gid,gjd->gij', t, s) / self.temperature  # (G, K, K)
        target = torch.arange(num_rows, device=logits.device).expand(num_groups, -1)
        loss = F.cross_entropy(logits.flatten(0, 1), target.flatten())
        return self.loss_weight * loss

    def extra_repr(self) -> str:
        return f'temperature={self.temperature}, loss_weight={self.loss_weight}'
