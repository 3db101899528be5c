"""DINO whose decoder can run extra, isolated query groups next to its denoising queries."""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.detectors import DINO
from mmdet.models.layers import DeformableDetrTransformerEncoder, SinePositionalEncoding
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList
from torch import Tensor, nn

from ..common import OWN_GROUP, QueryGroup, gather_queries
from ..layers import (
    FoldedGroupLayout,
    GroupDinoTransformerDecoder,
    build_dino_self_attn_mask,
    concat_groups,
    group_slices,
)
from .query_group_mixin import DECODER_INPUTS, QueryGroupMixin, num_equal_leading_groups


@MODELS.register_module()
class GroupDINO(QueryGroupMixin, DINO):
    """``DINO`` with query groups (see :class:`QueryGroupMixin`).

    **Queries.** A DINO query group is a content query and a reference box,
    (bs, n, 4) sigmoid cxcywh; the positional query is made from the box in
    every decoder layer (``ref_point_head``), so groups carry none. DINO's
    *mixed query selection* (Zhang et al., 2022, "DINO: DETR with Improved
    DeNoising Anchor Boxes", Sec. 3.4) makes its own queries from the top-k
    encoder proposals of each image (the reference boxes) and the learned
    ``query_embedding`` (the content). So *the teacher's queries* offered to a
    student (D3ETR fixed matching, DETRDistill's query-prior group, OD-DETR's
    initial queries) are the teacher's selected top-k proposal boxes of each
    image with the teacher's content queries, as they enter its decoder
    (:meth:`own_query_group`). They fit only a student of the same query format
    (:meth:`query_format`: DINO, same ``embed_dims``); a Deformable DETR
    student is refused by the component, naming its key.

    **Denoising queries.** In training (``self.training``), mmdet's
    ``pre_decoder`` prepends the contrastive-denoising (DN) queries to the
    matching queries, and its ``dn_meta`` goes to the head inputs. They stay
    first on the query axis, as in mmdet; the groups follow::

        query axis: [ DN (d) | own (n0) | group 1 | ... ]
        slices:              own          group 1   ...   (DN excluded)

    ``slices`` name the query groups only, shifted by d: everything read by
    group (matching, distillation, the student's matching losses) sees the
    matching queries only; the DN queries' outputs are ``[:d]`` of the head
    outputs, for mmdet's DN losses (``dn_meta['num_denoising_queries']`` = d).
    The mask of :func:`build_dino_self_attn_mask` keeps them all apart: the DN
    part and the own group are exactly mmdet's, the extra groups see only
    themselves. With DN queries (train mode) its blocks run as separate calls
    (:meth:`denoising_group_layout`): DN + own in one call under mmdet's
    ``dn_mask``, as mmdet's DINO runs them, then the extra groups, folded
    into the batch axis where equal, the others a tail under their own mask.
    Without DN queries (eval mode: a teacher) equal groups fold, own group
    included, as in the other families.

    Inference (``predict``/``_forward``) and training without groups are
    mmdet's DINO; the decoder is :class:`GroupDinoTransformerDecoder` (same
    parameters and names).
    """

    def _init_layers(self) -> None:
        """Build layers as mmdet 3.3.0's ``DINO._init_layers`` does (copied,
        same order, so the same seed gives the same init), with the group
        decoder."""
        self.positional_encoding = SinePositionalEncoding(**self.positional_encoding)
        self.encoder = DeformableDetrTransformerEncoder(**self.encoder)
        self.decoder = GroupDinoTransformerDecoder(**self.decoder)
        self.embed_dims = self.encoder.embed_dims
        self.query_embedding = nn.Embedding(self.num_queries, self.embed_dims)
        num_feats = self.positional_encoding.num_feats
        if num_feats * 2 != self.embed_dims:
            raise ValueError(
                f'positional_encoding.num_feats ({num_feats}) must be half of embed_dims '
                f'({self.embed_dims})'
            )
        self.level_embed = nn.Parameter(torch.Tensor(self.num_feature_levels, self.embed_dims))
        self.memory_trans_fc = nn.Linear(self.embed_dims, self.embed_dims)
        self.memory_trans_norm = nn.LayerNorm(self.embed_dims)

    def forward_transformer_with_groups(
        self,
        img_feats: Tuple[Tensor],
        batch_data_samples: OptSampleList,
        groups: Sequence[QueryGroup] = (),
    ) -> Tuple[Dict, Dict[str, slice], QueryGroup]:
        """mmdet's ``DINO.forward_transformer`` (copied: no hook between
        ``pre_decoder`` and the decoder) with extra query groups after the
        DN and own queries; see :meth:`QueryGroupMixin.forward_transformer_with_groups`.

        Returns:
            tuple[dict, dict[str, slice], QueryGroup]: The head inputs (with
            mmdet's ``dn_meta`` in train mode); where each group sits on the
            query axis, after the DN queries; the own group.
        """
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        tmp_dec_in, head_inputs = self.pre_decoder(
            **encoder_outputs, batch_data_samples=batch_data_samples
        )
        decoder_inputs.update(tmp_dec_in)

        own = self.own_query_group(decoder_inputs)
        plain_inputs = decoder_inputs  # before the groups join: see decode_query_group
        all_groups = [own, *groups]
        num_dn = self.num_denoising_queries(decoder_inputs)
        slices = {
            name: slice(s.start + num_dn, s.stop + num_dn)
            for name, s in group_slices(
                [g.name for g in all_groups], [g.num_queries for g in all_groups]
            ).items()
        }
        if groups:
            decoder_inputs = self.merge_query_groups(decoder_inputs, all_groups)
            dn_mask = decoder_inputs['dn_mask']
            if dn_mask is None:  # eval mode: no DN queries
                layout = self.folded_group_layout(all_groups)
            else:
                layout = self.denoising_group_layout(dn_mask, all_groups)
            if layout is not None:  # the layout replaces the mask
                decoder_inputs.update(dn_mask=None, group_layout=layout)
            else:
                num_heads = self.decoder.layers[0].self_attn.num_heads
                decoder_inputs['dn_mask'] = build_dino_self_attn_mask(
                    decoder_inputs['dn_mask'], all_groups, num_heads
                )
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        head_inputs[DECODER_INPUTS] = plain_inputs
        return head_inputs, slices, own

    def decode_query_group(self, decoder_inputs: Dict, group: QueryGroup) -> Dict:
        """:meth:`QueryGroupMixin.decode_query_group` without DN queries: ``group`` runs
        alone, as in eval mode, also on the decoder inputs of a training pass."""
        num_dn = self.num_denoising_queries(decoder_inputs)
        plain = dict(
            decoder_inputs,
            query=decoder_inputs['query'][:, num_dn:],
            reference_points=decoder_inputs['reference_points'][:, num_dn:],
            dn_mask=None,
        )
        return super().decode_query_group(plain, group)

    def denoising_group_layout(
        self, dn_mask: Tensor, groups: Sequence[QueryGroup]
    ) -> Optional[FoldedGroupLayout]:
        """The layout of DN queries and ``groups`` (own first), or None to mask.

        The DN queries and the own group lead, in one call under ``dn_mask``
        (mmdet's call); the extra groups follow, folded as far as they are of
        one size and unpadded, the rest a tail under its own mask (see
        :mod:`..layers.dino_self_attn_mask`). Every group is thus alone in its
        call or batch row: the mask's blocks, without the masked scores.

        Args:
            dn_mask (Tensor): mmdet's mask over the DN queries and the own
                group, bool (d + n0, d + n0).
            groups (Sequence[QueryGroup]): All groups, in query-axis order.

        Returns:
            FoldedGroupLayout, optional: None (one call under the whole mask)
            with ``fold_group_self_attention`` off.
        """
        if not self.can_fold_self_attention():
            return None
        extra = groups[1:]
        folded = num_equal_leading_groups(extra)
        tail = extra[folded:]
        return FoldedGroupLayout(
            folded,
            tail_queries=sum(g.num_queries for g in tail),
            tail_mask=self.group_self_attn_mask(tail) if tail else None,
            lead_queries=dn_mask.shape[-1],
            lead_mask=dn_mask,
        )

    def num_folded_groups(self, groups: Sequence[QueryGroup]) -> int:
        """0 in train mode (DN queries present: the own group runs with them,
        never folded, see :meth:`denoising_group_layout`), else
        :meth:`QueryGroupMixin.num_folded_groups`."""
        return 0 if self.training else super().num_folded_groups(groups)

    def num_denoising_queries(self, decoder_inputs: Dict) -> int:
        """Number d of DN queries leading ``decoder_inputs`` as ``pre_decoder``
        made them (before groups are merged; 0 in eval mode)."""
        return decoder_inputs['query'].shape[1] - self.num_queries

    def query_format(self) -> Tuple:
        """(family, embed_dims, reference dim): see :meth:`QueryGroupMixin.query_format`."""
        return ('dino', self.embed_dims, 4)

    def own_query_group(self, decoder_inputs: Dict) -> QueryGroup:
        """The matching queries (after the DN queries): content queries and
        sigmoid reference boxes (the selected top-k proposals)."""
        num_dn = self.num_denoising_queries(decoder_inputs)
        return QueryGroup(
            OWN_GROUP,
            decoder_inputs['query'][:, num_dn:],
            reference=decoder_inputs['reference_points'][:, num_dn:],
        )

    def merge_query_groups(self, decoder_inputs: Dict, groups: List[QueryGroup]) -> Dict:
        """The DN queries, then ``groups`` (own first): queries and reference boxes."""
        if any(g.reference is None or g.reference.shape[-1] != 4 for g in groups):
            raise ValueError(
                'DINO takes query groups with `reference` boxes of shape (bs, n, 4) in sigmoid '
                'space'
            )
        num_dn = self.num_denoising_queries(decoder_inputs)
        denoising = QueryGroup(
            'denoising',
            decoder_inputs['query'][:, :num_dn],
            reference=decoder_inputs['reference_points'][:, :num_dn],
        )
        merged = dict(decoder_inputs)
        merged['query'] = concat_groups([denoising, *groups], 'query')
        merged['reference_points'] = concat_groups([denoising, *groups], 'reference')
        return merged

    def stage_query_group(
        self, name: str, own: QueryGroup, hidden: Tensor, boxes: Tensor, idx: Tensor
    ) -> QueryGroup:
        """Stage embedding (DINO's normed layer output) as content, the stage's
        predicted box as reference."""
        return QueryGroup(name, gather_queries(hidden, idx), reference=gather_queries(boxes, idx))

    def proposal_query_group(self, name: str, proposals: Tensor) -> QueryGroup:
        """Queries made from given proposals, as this model makes its own:
        content query i (``query_embedding``) with proposal i as reference box
        (mixed query selection, on proposals chosen elsewhere, e.g. by a
        student, so that a teacher decodes the student's queries).

        Args:
            name (str): Group name.
            proposals (Tensor): Sigmoid cxcywh boxes, (bs, num_queries, 4).
        """
        bs, num = proposals.shape[:2]
        if num != self.num_queries:
            raise ValueError(
                f'DINO pairs proposal i with content query i: got {num} proposals for '
                f'num_queries={self.num_queries}; give both models the same num_queries'
            )
        query = self.query_embedding.weight[None].expand(bs, -1, -1)
        return QueryGroup(name, query, reference=proposals)

    def decoder_attention_modules(self) -> Dict[str, List[nn.Module]]:
        """Self-attention (``MultiheadAttention``) and multi-scale deformable
        cross-attention modules of each decoder layer."""
        layers = self.decoder.layers
        return dict(self=[m.self_attn for m in layers], cross=[m.cross_attn for m in layers])
