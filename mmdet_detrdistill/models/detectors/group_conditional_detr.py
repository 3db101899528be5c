"""Conditional DETR whose decoder can run extra, isolated query groups."""

from typing import Dict, List, Optional, Tuple

from mmdet.models.detectors import ConditionalDETR
from mmdet.models.layers import DetrTransformerEncoder, SinePositionalEncoding
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..common import OWN_GROUP, QueryGroup, gather_queries
from ..layers import (
    FoldedGroupLayout,
    GroupConditionalDetrTransformerDecoder,
    concat_groups,
)
from .query_group_mixin import QueryGroupMixin


@MODELS.register_module()
class GroupConditionalDETR(QueryGroupMixin, ConditionalDETR):
    """``ConditionalDETR`` with query groups (see :class:`QueryGroupMixin`).

    Same parameters, names and inference as mmdet's ``ConditionalDETR``:
    a checkpoint of one loads strictly into the other. A Conditional DETR
    query group is a zero content query plus a positional query.
    """

    def _init_layers(self) -> None:
        """Build layers as mmdet 3.3.0's ``ConditionalDETR._init_layers`` does
        (copied, same order, so the same seed gives the same init), with the
        group decoder."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DetrTransformerEncoder(**self.encoder)
        self.decoder = GroupConditionalDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise ValueError(
                f'positional_encoding.num_feats ({num_feats}) must be half of embed_dims '
                f'({self.embed_dims})'
            )

    def forward_decoder(
        self,
        query: Tensor,
        query_pos: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        memory_pos: Tensor,
        self_attn_mask: Optional[Tensor] = None,
        group_layout: Optional[FoldedGroupLayout] = None,
    ) -> Dict:
        """mmdet's ``forward_decoder`` plus an optional group mask or folded
        group layout (see :meth:`forward_transformer_with_groups`)."""
        hidden_states, references = self.decoder(
            query=query,
            key=memory,
            query_pos=query_pos,
            key_pos=memory_pos,
            key_padding_mask=memory_mask,
            self_attn_mask=self_attn_mask,
            group_layout=group_layout,
        )
        return dict(hidden_states=hidden_states, references=references)

    def query_format(self) -> Tuple:
        """(family, embed_dims, ...): see :meth:`QueryGroupMixin.query_format`."""
        return ('conditional', self.embed_dims)

    def own_query_group(self, decoder_inputs: Dict) -> QueryGroup:
        """The own queries: zero content + learned positional queries."""
        return QueryGroup(OWN_GROUP, decoder_inputs['query'], decoder_inputs['query_pos'])

    def merge_query_groups(self, decoder_inputs: Dict, groups: List[QueryGroup]) -> Dict:
        """Concatenate ``query`` and ``query_pos`` of all groups."""
        if any(g.query_pos is None for g in groups):
            raise ValueError('Conditional DETR query groups need `query_pos` (bs, n, dim)')
        merged = dict(decoder_inputs)
        merged['query'] = concat_groups(groups, 'query')
        merged['query_pos'] = concat_groups(groups, 'query_pos')
        return merged

    def stage_query_group(
        self, name: str, own: QueryGroup, hidden: Tensor, boxes: Tensor, idx: Tensor
    ) -> QueryGroup:
        """Stage embedding as content, the query's learned positional query
        (Conditional DETR derives its reference point from it)."""
        return QueryGroup(name, gather_queries(hidden, idx), gather_queries(own.query_pos, idx))

    def decoder_attention_modules(self) -> Dict[str, List[nn.Module]]:
        """The ``ConditionalAttention`` modules of each decoder layer."""
        layers = self.decoder.layers
        return dict(self=[m.self_attn for m in layers], cross=[m.cross_attn for m in layers])
