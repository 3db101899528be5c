"""Layers: query groups, their attention masks or folding, and attention recording."""

from .attention_recorder import AttentionRecorder
from .dino_self_attn_mask import build_dino_self_attn_mask
from .folded_self_attention import (
    FoldedGroupLayout,
    GroupSelfAttentionMixin,
    can_fold,
    fold_groups,
    folded_self_attention,
    unfold_groups,
)
from .group_attention_blocks import GroupBlock, group_blocks
from .group_conditional_detr_decoder import (
    GroupConditionalDetrTransformerDecoder,
    GroupConditionalDetrTransformerDecoderLayer,
)
from .group_dab_detr_decoder import (
    GroupDABDetrTransformerDecoder,
    GroupDABDetrTransformerDecoderLayer,
)
from .group_deformable_detr_decoder import (
    GroupDeformableDetrTransformerDecoder,
    GroupDeformableDetrTransformerDecoderLayer,
)
from .group_dino_decoder import GroupDinoTransformerDecoder
from .query_groups import (
    build_group_self_attn_mask,
    build_padded_group_self_attn_mask,
    concat_groups,
    group_slices,
    split_groups,
)

__all__ = [
    'AttentionRecorder',
    'FoldedGroupLayout',
    'GroupBlock',
    'GroupConditionalDetrTransformerDecoder',
    'GroupConditionalDetrTransformerDecoderLayer',
    'GroupDABDetrTransformerDecoder',
    'GroupDABDetrTransformerDecoderLayer',
    'GroupDeformableDetrTransformerDecoder',
    'GroupDeformableDetrTransformerDecoderLayer',
    'GroupDinoTransformerDecoder',
    'GroupSelfAttentionMixin',
    'build_dino_self_attn_mask',
    'build_group_self_attn_mask',
    'build_padded_group_self_attn_mask',
    'can_fold',
    'concat_groups',
    'fold_groups',
    'group_blocks',
    'folded_self_attention',
    'group_slices',
    'split_groups',
    'unfold_groups',
]
