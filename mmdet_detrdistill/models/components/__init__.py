"""Distillation components (registered in mmdet's ``MODELS``), one config entry each."""

from ..common import TEACHER_QUERY_GROUP
from .adaptive_match_kd import AdaptiveMatchKD
from .auxiliary_query_groups import AuxiliaryQueryGroups
from .base_component import DistillComponent
from .contrastive_embedding_kd import ContrastiveEmbeddingKD
from .fixed_match_kd import FixedMatchKD
from .hungarian_logits_kd import HungarianLogitsKD
from .initial_query_kd import InitialQueryKD
from .oddetr_guided_assignment import ODDETRGuidedAssignment
from .oddetr_matching_distillation import ODDETRMatchingDistillation
from .query_prior_assignment import QueryPriorAssignment
from .target_aware_feature_kd import TargetAwareFeatureKD

__all__ = [
    'AdaptiveMatchKD',
    'AuxiliaryQueryGroups',
    'ContrastiveEmbeddingKD',
    'DistillComponent',
    'FixedMatchKD',
    'HungarianLogitsKD',
    'InitialQueryKD',
    'ODDETRGuidedAssignment',
    'ODDETRMatchingDistillation',
    'QueryPriorAssignment',
    'TEACHER_QUERY_GROUP',
    'TargetAwareFeatureKD',
]
