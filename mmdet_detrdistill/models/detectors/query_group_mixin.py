"""Run extra query groups through a DETR decoder in the same pass as its own."""

from typing import Any, Dict, List, Optional, Sequence, Tuple

from mmdet.structures import OptSampleList
from torch import Tensor, nn

from ..common import QueryGroup
from ..layers import (
    FoldedGroupLayout,
    build_group_self_attn_mask,
    build_padded_group_self_attn_mask,
    can_fold,
    group_slices,
)

#: ``head_inputs`` key of the decoder inputs before the groups joined (see
#: :meth:`QueryGroupMixin.decode_query_group`); mmdet's heads do not read it
DECODER_INPUTS = 'decoder_inputs'


def num_equal_leading_groups(groups: Sequence[QueryGroup]) -> int:
    """How many leading ``groups`` have the first group's size, none padded."""
    count = 0
    for group in groups:
        if group.num_queries != groups[0].num_queries or group.valid is not None:
            break
        count += 1
    return count


class QueryGroupMixin:
    """Query-group support for an mmdet ``DetectionTransformer`` subclass.

    The family-specific steps are small hooks: :meth:`own_query_group`
    (read the detector's own queries out of the decoder inputs; a teacher's
    own group is what it offers to a student as an extra group),
    :meth:`adopt_query_group` (such a group made the student's way),
    :meth:`merge_query_groups` (concatenate groups into decoder inputs) and
    :meth:`decoder_attention_modules`.
    Inference (``predict``/``_forward``) is untouched and runs the own group
    alone, exactly as the mmdet parent class does.

    Args:
        *args, **kwargs: The mmdet detector's arguments.
        fold_group_self_attention (bool): Run the self-attention of equal-size,
            unpadded groups folded into the batch axis instead of under a
            block-diagonal mask (same outputs, less work; see
            :mod:`..layers.folded_self_attention`). A student config option:
            ``model.student.fold_group_self_attention=False`` runs the mask.
            Defaults to True.
    """

    def __init__(self, *args: Any, fold_group_self_attention: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fold_group_self_attention = fold_group_self_attention

    def forward_transformer_with_groups(
        self,
        img_feats: Tuple[Tensor],
        batch_data_samples: OptSampleList,
        groups: Sequence[QueryGroup] = (),
    ) -> Tuple[Dict, Dict[str, slice], QueryGroup]:
        """``forward_transformer`` with extra query groups.

        The step order is mmdet's ``DetectionTransformer.forward_transformer``
        (copied: it has no hook between ``pre_decoder`` and the decoder).

        How the groups are kept apart in self-attention (same outputs, see
        :mod:`..layers.folded_self_attention`), passed to ``forward_decoder``
        as an argument: all groups equal and unpadded are folded into the
        batch axis; equal leading groups followed by others are folded, and
        the others run in a second call under their own mask
        (``group_layout``, a :class:`FoldedGroupLayout`); otherwise one call
        runs under the block-diagonal mask of all groups (``self_attn_mask``).

        Returns:
            tuple[dict, dict[str, slice], QueryGroup]: The head inputs for all
            groups together (and, under :data:`DECODER_INPUTS`, the decoder
            inputs before the groups joined); where each group sits on the query axis (the own
            group is named ``'own'`` and comes first); the own group as it
            entered the decoder.
        """
        encoder_inputs, decoder_inputs = self.pre_transformer(img_feats, batch_data_samples)
        encoder_outputs = self.forward_encoder(**encoder_inputs)
        tmp_dec_in, head_inputs = self.pre_decoder(**encoder_outputs)
        decoder_inputs.update(tmp_dec_in)

        own = self.own_query_group(decoder_inputs)
        plain_inputs = decoder_inputs  # before the groups join: see decode_query_group
        all_groups = [own] + list(groups)
        slices = group_slices([g.name for g in all_groups], [g.num_queries for g in all_groups])
        if groups:
            decoder_inputs = self.merge_query_groups(decoder_inputs, all_groups)
            layout = self.folded_group_layout(all_groups)
            if layout is not None:
                decoder_inputs['group_layout'] = layout
            else:
                decoder_inputs['self_attn_mask'] = self.group_self_attn_mask(all_groups)
        head_inputs.update(self.forward_decoder(**decoder_inputs))
        head_inputs[DECODER_INPUTS] = plain_inputs
        return head_inputs, slices, own

    def decode_query_group(self, decoder_inputs: Dict, group: QueryGroup) -> Dict:
        """Decode ``group`` in place of the own queries, on an encoder output already made.

        ``decoder_inputs`` are those of an earlier :meth:`forward_transformer_with_groups`
        (``head_inputs[DECODER_INPUTS]``: the encoder's memory, masks and level layout, and
        the own queries, which ``group`` replaces). The decoder then runs ``group`` alone:
        its outputs are those it gets next to the own group in one pass (groups never see
        each other), without running the encoder again or decoding the own queries twice.
        An OD-DETR teacher decodes its student's two-stage proposals this way.

        Returns:
            dict: ``hidden_states`` and ``references`` of the group's queries.
        """
        return self.forward_decoder(**self.merge_query_groups(decoder_inputs, [group]))

    def folded_group_layout(self, groups: Sequence[QueryGroup]) -> Optional[FoldedGroupLayout]:
        """The folded layout of ``groups`` (own group first, in query-axis
        order; the groups after the folded ones a tail, run under its own
        mask), or None to mask."""
        folded = self.num_folded_groups(groups)
        if not folded:
            return None
        tail = groups[folded:]
        return FoldedGroupLayout(
            folded,
            tail_queries=sum(g.num_queries for g in tail),
            tail_mask=self.group_self_attn_mask(tail) if tail else None,
        )

    def group_self_attn_mask(self, groups: Sequence[QueryGroup]) -> Optional[Tensor]:
        """The self-attention mask that keeps ``groups`` apart: per image when
        one is padded, (N, N) otherwise, None for one unpadded group."""
        if any(g.valid is not None for g in groups):  # padded: per-image masks
            num_heads = self.decoder.layers[0].self_attn.num_heads
            return build_padded_group_self_attn_mask(groups, num_heads)
        if len(groups) == 1:
            return None
        return build_group_self_attn_mask([g.num_queries for g in groups], groups[0].query.device)

    def num_folded_groups(self, groups: Sequence[QueryGroup]) -> int:
        """How many leading ``groups`` (own group first) can run their
        self-attention folded into the batch axis: the longest run of groups
        of the first group's size, none padded, if it has two or more and
        the modules are batch-first with ``fold_group_self_attention`` on;
        0 otherwise."""
        if not self.can_fold_self_attention():
            return 0
        count = num_equal_leading_groups(groups)
        return count if count > 1 else 0

    def can_fold_self_attention(self) -> bool:
        """Whether the decoder may fold groups: ``fold_group_self_attention``
        on and every self-attention module batch-first."""
        modules = self.decoder_attention_modules()['self']
        return self.fold_group_self_attention and all(can_fold(m) for m in modules)

    def folds_self_attention(self, groups: Sequence[QueryGroup]) -> bool:
        """Whether *all* ``groups`` (own group first) run their self-attention
        folded into the batch axis: more than one group, all of one size, none
        padded (see :meth:`num_folded_groups`)."""
        return len(groups) > 1 and self.num_folded_groups(groups) == len(groups)

    def query_format(self) -> Tuple:
        """What a query group of this model looks like; two models can swap
        query groups only if their formats are equal."""
        raise NotImplementedError

    def own_query_group(self, decoder_inputs: Dict) -> QueryGroup:
        """The detector's own queries, read from ``decoder_inputs``."""
        raise NotImplementedError

    def merge_query_groups(self, decoder_inputs: Dict, groups: List[QueryGroup]) -> Dict:
        """Decoder inputs with ``groups`` (own group first) concatenated."""
        raise NotImplementedError

    def adopt_query_group(self, group: QueryGroup) -> QueryGroup:
        """Another model's queries made into a group the way this model makes its own.

        A group taken from another model (the teacher's queries as they
        entered its decoder) keeps that model's query parameters; what this
        model derives from its own query parameters before the decoder is
        derived from the group's with this model's layers, so that they learn
        from the group too. Default: the group as it is (Conditional DETR,
        DAB-DETR and DINO derive nothing before the decoder: their decoders
        make positional queries or reference points from the group's fields
        with this model's layers anyway).
        """
        return group

    def decoder_attention_modules(self) -> Dict[str, List[nn.Module]]:
        """Attention modules per kind (``'self'``, ``'cross'``), in layer order."""
        raise NotImplementedError

    def stage_query_group(
        self, name: str, own: QueryGroup, hidden: Tensor, boxes: Tensor, idx: Tensor
    ) -> QueryGroup:
        """Queries ``idx`` as the decoder left them after one stage, as a group.

        A stage query is the stage's output embedding (content), the query's
        positional part, and the stage's predicted box as its reference, as
        far as the family's query format takes one.

        Args:
            name (str): Group name.
            own (QueryGroup): The model's own group as it entered the decoder.
            hidden (Tensor): Output embeddings of the stage, (bs, N, dim).
            boxes (Tensor): Sigmoid cxcywh boxes predicted there, (bs, N, 4).
            idx (Tensor): Query indices per image, (bs, k).
        """
        raise NotImplementedError
