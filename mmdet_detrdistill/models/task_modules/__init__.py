"""Matchers, match costs and assigners (registered in mmdet's ``TASK_UTILS``)."""

from .match_stability import RecordingAssigner, layer_match_instability, match_instability
from .mix_matcher import MixMatcher
from .soft_label_bce_cost import SoftLabelBCECost
from .teacher_assisted_assigner import TEACHER_PREDS_KEY, TeacherAssistedAssigner
from .teacher_guided_assigner import TeacherGuidedAssigner

__all__ = [
    'MixMatcher',
    'RecordingAssigner',
    'SoftLabelBCECost',
    'TEACHER_PREDS_KEY',
    'TeacherAssistedAssigner',
    'TeacherGuidedAssigner',
    'layer_match_instability',
    'match_instability',
]
