"""DAB-DETR whose decoder can run extra, isolated query groups."""

from typing import Dict, List, Optional, Tuple

from mmdet.models.detectors import DABDETR
from mmdet.models.layers import DABDetrTransformerEncoder, SinePositionalEncoding
from mmdet.models.layers.transformer import inverse_sigmoid
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..common import OWN_GROUP, QueryGroup, gather_queries
from ..layers import (
    FoldedGroupLayout,
    GroupDABDetrTransformerDecoder,
    concat_groups,
)
from .query_group_mixin import QueryGroupMixin


@MODELS.register_module()
class GroupDABDETR(QueryGroupMixin, DABDETR):
    """``DABDETR`` with query groups (see :class:`QueryGroupMixin`).

    A DAB-DETR query group is a content query (zeros, or the pattern
    embeddings) plus a 4-D anchor box in inverse-sigmoid space, stored as the
    group's ``reference`` (mmdet passes anchors to the decoder as
    ``query_pos``). mmdet's DAB decoder forwards extra keywords to its layers,
    whose self-attention mask keyword is ``self_attn_masks``; the decoder is
    :class:`GroupDABDetrTransformerDecoder` (layers that also take a folded
    group layout), with mmdet's parameters and names.
    """

    def _init_layers(self) -> None:
        """Build layers as mmdet 3.3.0's ``DABDETR._init_layers`` does (copied,
        same order, so the same seed gives the same init), with the group decoder."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DABDetrTransformerEncoder(**self.encoder)
        self.decoder = GroupDABDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_dim = self.decoder.query_dim
        self.query_embedding = nn.Embedding(self.num_queries, self.query_dim)
        if self.num_patterns > 0:
            self.patterns = nn.Embedding(self.num_patterns, self.embed_dims)
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
        extra = {} if self_attn_mask is None else dict(self_attn_masks=self_attn_mask)
        if group_layout is not None:
            extra['group_layout'] = group_layout
        hidden_states, references = self.decoder(
            query=query,
            key=memory,
            query_pos=query_pos,
            key_pos=memory_pos,
            key_padding_mask=memory_mask,
            reg_branches=self.bbox_head.fc_reg,
            **extra,
        )
        return dict(hidden_states=hidden_states, references=references)

    def query_format(self) -> Tuple:
        """(family, embed_dims, ...): see :meth:`QueryGroupMixin.query_format`."""
        return ('dab', self.embed_dims, self.query_dim, self.num_patterns)

    def own_query_group(self, decoder_inputs: Dict) -> QueryGroup:
        """Content queries and anchor boxes (inverse sigmoid, (bs, n, 4))."""
        return QueryGroup(OWN_GROUP, decoder_inputs['query'], reference=decoder_inputs['query_pos'])

    def merge_query_groups(self, decoder_inputs: Dict, groups: List[QueryGroup]) -> Dict:
        """Concatenate content queries and anchors of all groups."""
        if any(g.reference is None or g.reference.shape[-1] != self.query_dim for g in groups):
            raise ValueError(
                f'DAB-DETR query groups need `reference` anchors (bs, n, '
                f'{self.query_dim}) in inverse-sigmoid space'
            )
        merged = dict(decoder_inputs)
        merged['query'] = concat_groups(groups, 'query')
        merged['query_pos'] = concat_groups(groups, 'reference')
        return merged

    def stage_query_group(
        self, name: str, own: QueryGroup, hidden: Tensor, boxes: Tensor, idx: Tensor
    ) -> QueryGroup:
        """Stage embedding as content, the stage's predicted box as the anchor
        (inverse sigmoid, as DAB-DETR's next layer would take it)."""
        anchors = inverse_sigmoid(gather_queries(boxes, idx)[..., : self.query_dim])
        return QueryGroup(name, gather_queries(hidden, idx), reference=anchors)

    def decoder_attention_modules(self) -> Dict[str, List[nn.Module]]:
        """The ``ConditionalAttention`` modules of each decoder layer."""
        layers = self.decoder.layers
        return dict(self=[m.self_attn for m in layers], cross=[m.cross_attn for m in layers])
