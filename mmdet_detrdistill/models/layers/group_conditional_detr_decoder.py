"""Conditional DETR decoder that accepts a self-attention mask for query groups."""

from typing import Optional, Tuple

import torch
from mmdet.models.layers import ConditionalDetrTransformerDecoder
from mmdet.models.layers.transformer.utils import coordinate_to_encoding
from torch import Tensor


class GroupConditionalDetrTransformerDecoder(ConditionalDetrTransformerDecoder):
    """``ConditionalDetrTransformerDecoder`` with a ``self_attn_mask`` argument.

    mmdet's decoder layers already accept ``self_attn_masks`` but the decoder
    has no way to pass one, so ``forward`` is re-stated here (loop copied from
    mmdet 3.3.0, no hook exists); with ``self_attn_mask=None`` it computes
    exactly what mmdet's decoder computes. Parameters and their names are
    unchanged, so checkpoints load into either class.
    """

    def forward(
        self,
        query: Tensor,
        key: Optional[Tensor] = None,
        query_pos: Optional[Tensor] = None,
        key_pos: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        self_attn_mask: Optional[Tensor] = None,
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
            )
            if self.return_intermediate:
                intermediate.append(self.post_norm(query))
        if self.return_intermediate:
            return torch.stack(intermediate), reference
        return self.post_norm(query).unsqueeze(0), reference
