"""Matchers, match costs and assigners (registered in mmdet's ``TASK_UTILS``)."""

from .mix_matcher import MixMatcher
from .soft_label_bce_cost import SoftLabelBCECost
from .teacher_assisted_assigner import TEACHER_PREDS_KEY, TeacherAssistedAssigner

__all__ = ['MixMatcher', 'SoftLabelBCECost', 'TEACHER_PREDS_KEY', 'TeacherAssistedAssigner']
