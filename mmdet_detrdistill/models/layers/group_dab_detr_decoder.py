"""DAB-DETR decoder whose layers take a folded query-group layout."""

from typing import Optional

from mmcv.cnn import build_norm_layer
from mmdet.models.layers import DABDetrTransformerDecoder, DABDetrTransformerDecoderLayer
from mmdet.models.layers.transformer.utils import MLP
from mmengine.model import ModuleList
from torch import Tensor, nn

from .folded_self_attention import FoldedGroupLayout, GroupSelfAttentionMixin


class GroupDABDetrTransformerDecoderLayer(GroupSelfAttentionMixin, DABDetrTransformerDecoderLayer):
    """mmdet's DAB-DETR decoder layer with a ``group_layout`` argument.

    ``forward`` is mmdet 3.3.0's (copied: the self-attention call has no hook)
    with the self-attention call going through :meth:`group_self_attn`. Same
    parameters and names as mmdet's layer.
    """

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        query_pos: Tensor,
        key_pos: Tensor,
        ref_sine_embed: Optional[Tensor] = None,
        self_attn_masks: Optional[Tensor] = None,
        cross_attn_masks: Optional[Tensor] = None,
        key_padding_mask: Optional[Tensor] = None,
        is_first: bool = False,
        group_layout: Optional[FoldedGroupLayout] = None,
        **kwargs,
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
            **kwargs,
        )
        query = self.norms[0](query)
        query = self.cross_attn(
            query=query,
            key=key,
            query_pos=query_pos,
            key_pos=key_pos,
            ref_sine_embed=ref_sine_embed,
            attn_mask=cross_attn_masks,
            key_padding_mask=key_padding_mask,
            is_first=is_first,
            **kwargs,
        )
        query = self.norms[1](query)
        query = self.ffn(query)
        return self.norms[2](query)


class GroupDABDetrTransformerDecoder(DABDetrTransformerDecoder):
    """``DABDetrTransformerDecoder`` built with :class:`GroupDABDetrTransformerDecoderLayer`.

    mmdet's ``forward`` passes extra keywords (``self_attn_masks``,
    ``group_layout``) on to every layer, so only ``_init_layers`` changes: it
    is mmdet 3.3.0's (copied, same order) with the layer type swapped.
    Parameters and their names are unchanged, so checkpoints load into either
    class.
    """

    def _init_layers(self) -> None:
        """mmdet 3.3.0's ``_init_layers`` with the group layer type."""
        if self.query_dim not in (2, 4):
            raise ValueError(f'decoder.query_dim must be 2 or 4, got {self.query_dim}')
        self.layers = ModuleList(
            [GroupDABDetrTransformerDecoderLayer(**self.layer_cfg) for _ in range(self.num_layers)]
        )
        embed_dims = self.layers[0].embed_dims
        self.embed_dims = embed_dims
        self.post_norm = build_norm_layer(self.post_norm_cfg, embed_dims)[1]
        if self.query_scale_type == 'cond_elewise':
            self.query_scale = MLP(embed_dims, embed_dims, embed_dims, 2)
        elif self.query_scale_type == 'cond_scalar':
            self.query_scale = MLP(embed_dims, embed_dims, 1, 2)
        elif self.query_scale_type == 'fix_elewise':
            self.query_scale = nn.Embedding(self.num_layers, embed_dims)
        else:
            raise ValueError(
                f'decoder.query_scale_type must be cond_elewise, cond_scalar or fix_elewise, '
                f'got {self.query_scale_type!r}'
            )
        self.ref_point_head = MLP(self.query_dim // 2 * embed_dims, embed_dims, embed_dims, 2)
        if self.with_modulated_hw_attn and self.query_dim == 4:
            self.ref_anchor_head = MLP(embed_dims, embed_dims, 2, 2)
        self.keep_query_pos = self.layers[0].keep_query_pos
        if not self.keep_query_pos:
            for layer_id in range(self.num_layers - 1):
                self.layers[layer_id + 1].cross_attn.qpos_proj = None
