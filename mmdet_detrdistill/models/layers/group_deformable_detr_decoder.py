"""Deformable DETR decoder whose layers take a folded query-group layout."""

from typing import Optional

from mmdet.models.layers import (
    DeformableDetrTransformerDecoder,
    DeformableDetrTransformerDecoderLayer,
)
from mmengine.model import ModuleList
from torch import Tensor

from .folded_self_attention import FoldedGroupLayout, GroupSelfAttentionMixin


class GroupDeformableDetrTransformerDecoderLayer(
    GroupSelfAttentionMixin, DeformableDetrTransformerDecoderLayer
):
    """mmdet's Deformable DETR decoder layer with a ``group_layout`` argument.

    ``forward`` is mmdet 3.3.0's ``DetrTransformerDecoderLayer.forward``
    (copied: the self-attention call has no hook) with the self-attention call
    going through :meth:`group_self_attn`. The extra keywords mmdet passes to
    both attentions (``reference_points``, ``spatial_shapes``, ...) reach the
    self-attention unchanged, as in mmdet; mmcv's ``MultiheadAttention``
    ignores them. Same parameters and names as mmdet's layer.
    """

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        value: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        key_pos: Optional[Tensor] = None,
        self_attn_mask: Optional[Tensor] = None,
        cross_attn_mask: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        group_layout: Optional[FoldedGroupLayout] = None,
        **kwargs,
    ) -> Tensor:
        """mmdet's layer forward; ``group_layout`` folds the self-attention
        (then ``self_attn_mask`` must be None). Returns (bs, num_queries, dim)."""
        query = self.group_self_attn(
            group_layout,
            query=query,
            key=query,
            value=query,
            query_pos=query_pos,
            key_pos=query_pos,
            attn_mask=self_attn_mask,
            **kwargs,
        )
        query = self.norms[0](query)
        query = self.cross_attn(
            query=query,
            key=key,
            value=value,
            query_pos=query_pos,
            key_pos=key_pos,
            attn_mask=cross_attn_mask,
            key_padding_mask=key_padding_mask,
            **kwargs,
        )
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


class GroupDeformableDetrTransformerDecoder(DeformableDetrTransformerDecoder):
    """``DeformableDetrTransformerDecoder`` built with
    :class:`GroupDeformableDetrTransformerDecoderLayer`.

    mmdet's ``forward`` passes extra keywords (``self_attn_mask``,
    ``group_layout``) on to every layer, so only ``_init_layers`` changes: it
    is mmdet 3.3.0's (copied) with the layer type swapped. Parameters and
    their names are unchanged, so checkpoints load into either class.
    """

    def _init_layers(self) -> None:
        """mmdet 3.3.0's ``_init_layers`` with the group layer type."""
        self.layers = ModuleList(
            [
                GroupDeformableDetrTransformerDecoderLayer(**self.layer_cfg)
                for _ in range(self.num_layers)
            ]
        )
        self.embed_dims = self.layers[0].embed_dims
        if self.post_norm_cfg is not None:
            raise ValueError(f'{self._get_name()} has no post_norm: set decoder.post_norm_cfg=None')
