"""Layers: query groups, their attention masks or folding, and attention recording."""

from .attention_recorder import AttentionRecorder
from .folded_self_attention import FoldedGroupSelfAttention, can_fold, fold_groups, unfold_groups
from .group_conditional_detr_decoder import GroupConditionalDetrTransformerDecoder
from .query_groups import (
    QueryGroup,
    build_group_self_attn_mask,
    build_padded_group_self_attn_mask,
    concat_groups,
    group_slices,
    split_groups,
    take_queries,
)

__all__ = [
    'AttentionRecorder',
    'FoldedGroupSelfAttention',
    'GroupConditionalDetrTransformerDecoder',
    'QueryGroup',
    'build_group_self_attn_mask',
    'build_padded_group_self_attn_mask',
    'can_fold',
    'concat_groups',
    'fold_groups',
    'group_slices',
    'split_groups',
    'take_queries',
    'unfold_groups',
]
