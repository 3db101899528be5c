"""Matchers, match costs and assigners (registered in mmdet's ``TASK_UTILS``)."""

from .bound_teacher_assigner import BoundTeacherAssigner
from .match_stability import RecordingAssigner, layer_match_instability, match_instability
from .mix_matcher import MixMatcher
from .oddetr_guided_assigner import ODDETRGuidedAssigner
from .query_prior_assigner import QueryPriorAssigner
from .soft_label_bce_cost import SoftLabelBCECost
from .twin_targets import QueryTargets, twin_query_targets

__all__ = [
    'BoundTeacherAssigner',
    'MixMatcher',
    'ODDETRGuidedAssigner',
    'QueryPriorAssigner',
    'QueryTargets',
    'RecordingAssigner',
    'SoftLabelBCECost',
    'layer_match_instability',
    'match_instability',
    'twin_query_targets',
]
