"""Layers: query groups, their attention masks, and attention recording."""

from .attention_recorder import AttentionRecorder
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
    'GroupConditionalDetrTransformerDecoder',
    'QueryGroup',
    'build_group_self_attn_mask',
    'build_padded_group_self_attn_mask',
    'concat_groups',
    'group_slices',
    'split_groups',
    'take_queries',
]
