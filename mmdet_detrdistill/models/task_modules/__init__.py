"""Matchers and match costs (registered in mmdet's ``TASK_UTILS``)."""

from .mix_matcher import MixMatcher
from .soft_label_bce_cost import SoftLabelBCECost

__all__ = ['MixMatcher', 'SoftLabelBCECost']
