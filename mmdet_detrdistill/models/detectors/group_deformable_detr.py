"""Deformable DETR whose decoder can run extra, isolated query groups."""

import dataclasses
from typing import Dict, List, Optional, Tuple

import torch
from mmdet.models.detectors import DeformableDETR
from mmdet.models.layers import DeformableDetrTransformerEncoder, SinePositionalEncoding
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..common import OWN_GROUP, QueryGroup, gather_queries
from ..layers import (
    FoldedGroupLayout,
    GroupDeformableDetrTransformerDecoder,
    concat_groups,
)
from .query_group_mixin import QueryGroupMixin


@MODELS.register_module()
class GroupDeformableDETR(QueryGroupMixin, DeformableDETR):
    """``DeformableDETR`` with query groups (see :class:`QueryGroupMixin`).

    A Deformable DETR query group is a content query, a positional query and
    reference points in sigmoid space: (bs, n, 2) points for the one-stage
    model (with or without box refinement), (bs, n, 4) boxes for the
    two-stage model, whose queries are per-image encoder proposals. mmdet's
    decoder forwards extra keywords to its layers (keyword
    ``self_attn_mask``); the decoder is
    :class:`GroupDeformableDetrTransformerDecoder` (layers that also take a
    folded group layout), with mmdet's parameters and names.
    """

    def _init_layers(self) -> None:
        """Build layers as mmdet 3.3.0's ``DeformableDETR._init_layers`` does
        (copied, same order, so the same seed gives the same init), with the
        group decoder."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DeformableDetrTransformerEncoder(**self.encoder)
        self.decoder = GroupDeformableDetrTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        if not self.as_two_stage:  # split into query and query_pos in pre_decoder
            self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims * 2)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise ValueError(
                f'positional_encoding.num_feats ({num_feats}) must be half of embed_dims '
                f'({self.embed_dims})'
            )
        self.level_embed = nn.Parameter(torch.Tensor(self.num_feature_levels, self.embed_dims))
        if self.as_two_stage:
            self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
            self.memory_trans_norm = nn.LayerNorm(self.embed_dims)
            self.pos_trans_fc = nn.Linear(self.embed_dims * 2, self.embed_dims * 2)
            self.pos_trans_norm = nn.LayerNorm(self.embed_dims * 2)
        else:
            self.reference_points_fc = nn.Linear(self.embed_dims, 2)

    def forward_decoder(
        self,
        query: Tensor,
        query_pos: Tensor,
        memory: Tensor,
        memory_mask: Tensor,
        reference_points: Tensor,
        spatial_shapes: Tensor,
        level_start_index: Tensor,
        valid_ratios: Tensor,
        self_attn_mask: Optional[Tensor] = None,
        group_layout: Optional[FoldedGroupLayout] = None,
    ) -> Dict:
        """mmdet's ``forward_decoder`` plus an optional group mask or folded
        group layout (see :meth:`forward_transformer_with_groups`)."""
        extra = {} if self_attn_mask is None else dict(self_attn_mask=self_attn_mask)
        if group_layout is not None:
            extra['group_layout'] = group_layout
        inter_states, inter_references = self.decoder(
            query=query,
            value=memory,
            query_pos=query_pos,
            key_padding_mask=memory_mask,
            reference_points=reference_points,
            spatial_shapes=spatial_shapes,
            level_start_index=level_start_index,
            valid_ratios=valid_ratios,
            reg_branches=self.bbox_head.reg_branches if self.with_box_refine else None,
            **extra,
        )
        return dict(hidden_states=inter_states, references=[reference_points, *inter_references])

    def query_format(self) -> Tuple:
        """(family, embed_dims, ...): see :meth:`QueryGroupMixin.query_format`."""
        return ('deformable', self.embed_dims, self.reference_dim)

    @property
    def reference_dim(self) -> int:
        """4 (proposal boxes) when two-stage, else 2 (points)."""
        return 4 if self.as_two_stage else 2

    def own_query_group(self, decoder_inputs: Dict) -> QueryGroup:
        """Content and positional queries, sigmoid reference points."""
        return QueryGroup(
            OWN_GROUP,
            decoder_inputs['query'],
            decoder_inputs['query_pos'],
            decoder_inputs['reference_points'],
        )

    def adopt_query_group(self, group: QueryGroup) -> QueryGroup:
        """One-stage: reference points made from the group's positional
        queries by this model's ``reference_points_fc``, as mmdet's
        ``pre_decoder`` makes its own::

            reference = sigmoid(reference_points_fc(query_pos))    # (bs, n, 2)

        so a teacher's queries in this decoder train this model's reference
        layer too (DETRDistill's official code runs the teacher's
        ``query_embedding`` through the student's transformer, whose
        ``reference_points`` layer makes them). Two-stage: the group as it is;
        its reference boxes are encoder proposals, which no layer makes from
        the queries.
        """
        if self.as_two_stage:
            return group
        reference = self.reference_points_fc(group.query_pos).sigmoid()
        return dataclasses.replace(group, reference=reference)

    def merge_query_groups(self, decoder_inputs: Dict, groups: List[QueryGroup]) -> Dict:
        """Concatenate queries, positional queries and reference points."""
        ref_dim = self.reference_dim
        if any(g.reference is None or g.reference.shape[-1] != ref_dim for g in groups):
            raise ValueError(
                f'this Deformable DETR (as_two_stage={self.as_two_stage}) takes query groups '
                f'with `reference` points of shape (bs, n, {ref_dim}) in sigmoid space'
            )
        merged = dict(decoder_inputs)
        for key, field in (
            ('query', 'query'),
            ('query_pos', 'query_pos'),
            ('reference_points', 'reference'),
        ):
            merged[key] = concat_groups(groups, field)
        return merged

    def stage_query_group(
        self, name: str, own: QueryGroup, hidden: Tensor, boxes: Tensor, idx: Tensor
    ) -> QueryGroup:
        """Stage embedding as content, the query's positional query, and the
        stage's predicted box as reference: its centre (one-stage) or the
        whole box (two-stage), in sigmoid space."""
        reference = gather_queries(boxes, idx)[..., : self.reference_dim]
        return QueryGroup(
            name, gather_queries(hidden, idx), gather_queries(own.query_pos, idx), reference
        )

    def proposal_query_group(self, name: str, proposals: Tensor) -> QueryGroup:
        """Queries made from given two-stage proposals, as this model makes its own.

        The step of mmdet's two-stage ``pre_decoder`` after its top-k selection,
        on ``proposals`` chosen elsewhere (e.g. by a student, so that a teacher
        decodes the student's queries). ``get_proposal_pos_embed`` reads its
        input through a sigmoid, so the boxes go in as logits.

        Args:
            name (str): Group name.
            proposals (Tensor): Sigmoid cxcywh boxes, (bs, n, 4); the group's
                reference points.
        """
        if not self.as_two_stage:
            raise ValueError('proposal_query_group needs a two-stage Deformable DETR')
        embed = self.get_proposal_pos_embed(torch.logit(proposals))
        embed = self.pos_trans_norm(self.pos_trans_fc(embed))
        query_pos, query = torch.split(embed, self.embed_dims, dim=2)
        return QueryGroup(name, query, query_pos, proposals)

    def decoder_attention_modules(self) -> Dict[str, List[nn.Module]]:
        """Self-attention (``MultiheadAttention``) and multi-scale deformable
        cross-attention modules of each decoder layer."""
        layers = self.decoder.layers
        return dict(self=[m.self_attn for m in layers], cross=[m.cross_attn for m in layers])
