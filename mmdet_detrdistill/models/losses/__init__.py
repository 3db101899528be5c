"""Distillation losses (registered in mmdet's ``MODELS``)."""

from .attention_map_distill_loss import AttentionMapDistillLoss
from .info_nce_distill_loss import InfoNCEDistillLoss
from .soft_bce_distill_loss import SoftBCEDistillLoss

__all__ = ['AttentionMapDistillLoss', 'InfoNCEDistillLoss', 'SoftBCEDistillLoss']
