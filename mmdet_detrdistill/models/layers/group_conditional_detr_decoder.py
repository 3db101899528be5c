"""Conditional DETR decoder that takes a query-group mask or a folded group layout."""

from typing import Optional, Tuple

import torch
from mmcv.cnn import build_norm_layer
from mmdet.models.layers import (
    ConditionalDetrTransformerDecoder,
    ConditionalDetrTransformerDecoderLayer,
)
from mmdet.models.layers.transformer.utils import MLP, coordinate_to_encoding
from torch import Tensor
from torch.nn import ModuleList

from .folded_self_attention import FoldedGroupLayout, GroupSelfAttentionMixin


class GroupConditionalDetrTransformerDecoderLayer(
    GroupSelfAttentionMixin, ConditionalDetrTransformerDecoderLayer
):
    """mmdet's Conditional DETR decoder layer with a ``group_layout`` argument.

    ``forward`` is mmdet 3.3.0's (copied: the self-attention call has no hook)
    with the self-attention call going through :meth:`group_self_attn`. Same
    parameters and names as mmdet's layer.
    """

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        key_pos: Optional[Tensor] = None,
        self_attn_masks: Optional[Tensor] = None,
        cross_attn_masks: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        ref_sine_embed: Optional[Tensor] = None,
        is_first: bool = False,
        group_layout: Optional[FoldedGroupLayout] = None,
    ) -> Tensor:
        """mmdet's layer forward; ``group_layout`` folds the self-attention
        (then ``self_attn_masks`` must be None). Returns (bs, num_queries, dim)."""
        query = self.group_self_attn(
            group_layout,
            query=query,
            key=query,
            query_pos=query_pos,
            key_pos=query_pos,
            attn_mask=self_attn_masks,
        )
        query = self.norms[0](query)
        query = self.cross_attn(
            query=query,
            key=key,
            query_pos=query_pos,
            key_pos=key_pos,
            attn_mask=cross_attn_masks,
            key_padding_mask=key_padding_mask,
            ref_sine_embed=ref_sine_embed,
            is_first=is_first,
        )
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


class GroupConditionalDetrTransformerDecoder(ConditionalDetrTransformerDecoder):
    """``ConditionalDetrTransformerDecoder`` that passes query-group inputs to its layers.

    mmdet's decoder layers accept ``self_attn_masks`` but the decoder has no
    way to pass one, so ``forward`` is re-stated here (loop copied from mmdet
    3.3.0, no hook exists), with a ``self_attn_mask`` and a ``group_layout``
    argument; with both None it computes exactly what mmdet's decoder
    computes. ``_init_layers`` is mmdet's with the layer type swapped for
    :class:`GroupConditionalDetrTransformerDecoderLayer`. Parameters and their
    names are unchanged, so checkpoints load into either class.
    """

    def _init_layers(self) -> None:
        """mmdet 3.3.0's ``_init_layers`` (same order), with the group layer type."""
        self.layers = ModuleList(
            [
                GroupConditionalDetrTransformerDecoderLayer(**self.layer_cfg)
                for _ in range(self.num_layers)
            ]
        )
        self.embed_dims = self.layers[0].embed_dims
        self.post_norm = build_norm_layer(self.post_norm_cfg, self.embed_dims)[1]
        self.query_scale = MLP(self.embed_dims, self.embed_dims, self.embed_dims, 2)
        self.ref_point_head = MLP(self.embed_dims, self.embed_dims, 2, 2)
        for layer_id in range(self.num_layers - 1):  # only the first layer keeps qpos_proj
            self.layers[layer_id + 1].cross_attn.qpos_proj = None

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        key_pos: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        self_attn_mask: Optional[Tensor] = None,
        group_layout: Optional[FoldedGroupLayout] = None,
    ) -> Tuple[Tensor, Tensor]:
        """Forward the decoder.

        Args:
            query (Tensor): Content queries, shape (bs, num_queries, dim).
            key (Tensor): Encoder memory, shape (bs, num_keys, dim).
            query_pos (Tensor): Positional queries, shape (bs, num_queries, dim).
            key_pos (Tensor): Memory positional encoding, (bs, num_keys, dim).
            key_padding_mask (Tensor): Memory padding mask, (bs, num_keys).
            self_attn_mask (Tensor, optional): Bool mask (num_queries,
                num_queries), True = masked. Defaults to None.
            group_layout (FoldedGroupLayout, optional): Run self-attention
                folded by query group instead. Defaults to None.

        Returns:
            tuple[Tensor, Tensor]: Hidden states (num_layers, bs, num_queries,
            dim) (only the last layer if ``return_intermediate`` is False) and
            reference points (bs, num_queries, 2).
        """
        reference = self.ref_point_head(query_pos).sigmoid()  # (bs, num_queries, 2)
        reference_xy = reference[..., :2]
        intermediate = []
        for layer_id, layer in enumerate(self.layers):
            pos_transformation = 1 if layer_id == 0 else self.query_scale(query)
            ref_sine_embed = coordinate_to_encoding(coord_tensor=reference_xy) * pos_transformation
            query = layer(
                query,
                key=key,
                query_pos=query_pos,
                key_pos=key_pos,
                key_padding_mask=key_padding_mask,
                self_attn_masks=self_attn_mask,
                ref_sine_embed=ref_sine_embed,
                is_first=(layer_id == 0),
                group_layout=group_layout,
            )
            if self.return_intermediate:
                intermediate.append(self.post_norm(query))
        if self.return_intermediate:
            return torch.stack(intermediate), reference
        return self.post_norm(query).unsqueeze(0), reference
