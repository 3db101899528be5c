"""Distillation losses (registered in mmdet's ``MODELS``)."""

from .attention_map_distill_loss import AttentionMapDistillLoss
from .binary_kl_distill_loss import BinaryKLDistillLoss
from .info_nce_distill_loss import InfoNCEDistillLoss
from .multi_target_qfl_loss import MultiTargetQualityFocalLoss

__all__ = [
    'AttentionMapDistillLoss',
    'BinaryKLDistillLoss',
    'InfoNCEDistillLoss',
    'MultiTargetQualityFocalLoss',
]
