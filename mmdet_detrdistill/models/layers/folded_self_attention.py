"""Self-attention of equal-size, isolated query groups, folded into the batch axis.

With G query groups of n queries each (none padded), the block-diagonal mask of
:mod:`.query_groups` lets every query attend to its own group only. That is
exactly self-attention run on each group alone, so for the self-attention call
the groups are moved from the query axis to the batch axis, and back after it::

    query axis (bs, G*n, dim):  [ own (n) | group 1 (n) | ... ]      image b
                                    | view (groups are contiguous: free)
                                    v
    batch axis (bs*G, n, dim):  row b*G + 0: own        (sees own only)
                                row b*G + 1: group 1    (sees group 1 only)
                                ...
                                    | self-attention, no mask
                                    v
                                view back to (bs, G*n, dim)

Rows of the folded batch never interact (attention is per batch row), so a
group still cannot see another one. What changes is the cost: no (G*n)^2
score matrix of which all but G blocks are masked; scores, softmax and their
dropout mask are G times smaller, and no mask is built. Cross-attention, FFN,
norms and heads work per query and are not touched.

Outputs equal the masked computation up to float rounding (tested); in train
mode the attention-dropout mask is drawn over the smaller score tensor, so its
random draws differ, with the same distribution.

Groups that cannot fold (another size, or padded per image, like OD-DETR's
auxiliary groups) may follow the equal ones as a *tail*: the tail runs in a
second call of the same module, under its own mask, and the two outputs are
concatenated. The folded groups and the tail cannot see each other either (they
are separate calls)::

    query axis (bs, G*n + t, dim):  [ own | group 1 | tail (t, e.g. aux0 aux1 + padding) ]
                                      |_________|       |
                                      folded call        second call, tail mask (t x t)
                                      (bs*G, n, dim)     (bs, t, dim)

Queries that must run together under a mask of their own may also *lead*
(DINO in training: its denoising (DN) queries and its own group, under
mmdet's DN mask, :mod:`.dino_self_attn_mask`): the lead runs in a first call,
then the folded groups (here the extra groups only), then the tail::

    query axis:  [ DN (d) | own (n0) | group 1 (n) | group 2 (n) | tail (t) ]
                   |______________|   |_________________________|   |
                   lead call          folded call                    tail call
                   (bs, d+n0, dim)    (bs*G, n, dim), G = 2          (bs, t, dim)
                   lead mask: mmdet's no mask                        tail mask
                   dn_mask (d+n0)^2

The layout is an ordinary argument, :class:`FoldedGroupLayout`, that the
detector passes to its decoder and the decoder to each layer (as mmdet's DINO
passes its denoising mask); the group decoder layers call
:func:`folded_self_attention` in place of their self-attention module. It works
on any attention module that takes batch-first ``(bs, num_queries, dim)``
tensors by keyword and returns one tensor of that shape: mmdet's
``ConditionalAttention`` (Conditional DETR, DAB-DETR) and mmcv's
``MultiheadAttention`` with ``batch_first=True`` (Deformable DETR).
"""

from dataclasses import dataclass
from typing import Any, Optional

import torch
from torch import Tensor, nn

#: keyword inputs of the attention modules that are laid out (bs, num_queries, dim)
FOLDED_INPUTS = ('query', 'key', 'value', 'identity', 'query_pos', 'key_pos')


@dataclass
class FoldedGroupLayout:
    """How a decoder's self-attention runs its query groups: a lead, folded groups, a tail.

    On the query axis: ``lead_queries`` (one call, under ``lead_mask``), then
    G equal groups (one folded call), then ``tail_queries`` (one call, under
    ``tail_mask``); parts without queries make no call.

    Args:
        num_groups (int): Number G of equal-size, unpadded groups that run
            folded into the batch axis (own group first unless a lead holds
            it); 0 for none.
        tail_queries (int): Number of queries after them that run unfolded, in
            a call of their own. Defaults to 0.
        tail_mask (Tensor, optional): Self-attention mask of the tail, bool
            (t, t) or (bs * num_heads, t, t), ``True`` = masked. Defaults to
            None (the tail's queries all see each other).
        lead_queries (int): Number of queries before the folded groups that
            run unfolded, in a call of their own (DINO: DN + own). Defaults
            to 0.
        lead_mask (Tensor, optional): Self-attention mask of the lead, as
            ``tail_mask``. Defaults to None.
    """

    num_groups: int
    tail_queries: int = 0
    tail_mask: Optional[Tensor] = None
    lead_queries: int = 0
    lead_mask: Optional[Tensor] = None

    def __post_init__(self) -> None:
        for part in ('tail', 'lead'):
            mask, queries = getattr(self, f'{part}_mask'), getattr(self, f'{part}_queries')
            if mask is not None and mask.shape[-1] != queries:
                raise ValueError(
                    f'{part}_mask covers {mask.shape[-1]} queries, {part}_queries is {queries}'
                )


def can_fold(module: nn.Module) -> bool:
    """Whether ``module`` takes batch-first queries (the layout folding needs)."""
    return getattr(module, 'batch_first', True)  # ConditionalAttention has no flag: batch-first


def fold_groups(x: Tensor, num_groups: int) -> Tensor:
    """(bs, G*n, ...) -> (bs*G, n, ...): group g of image b becomes row b*G + g."""
    bs, total = x.shape[:2]
    if total % num_groups:
        raise ValueError(f'{total} queries cannot be folded into {num_groups} equal groups')
    return x.reshape(bs * num_groups, total // num_groups, *x.shape[2:])


def unfold_groups(x: Tensor, num_groups: int) -> Tensor:
    """(bs*G, n, ...) -> (bs, G*n, ...): the inverse of :func:`fold_groups`."""
    rows, n = x.shape[:2]
    return x.reshape(rows // num_groups, num_groups * n, *x.shape[2:])


def folded_self_attention(
    attn: nn.Module, layout: FoldedGroupLayout, *args: Any, **inputs: Any
) -> Tensor:
    """Call ``attn`` on the lead, the folded groups and the tail; concatenate.

    Args:
        attn (nn.Module): A batch-first self-attention module.
        layout (FoldedGroupLayout): The groups' layout on the query axis.
        **inputs: The module's keyword inputs as the decoder layer gives them
            for all queries (``query``, ``key``, ``query_pos``, ...), without
            ``attn_mask``: the layout replaces it. Inputs of
            :data:`FOLDED_INPUTS` are split (and the middle part folded);
            others pass unchanged to every call.

    Returns:
        Tensor: (bs, num_queries, dim), as ``attn`` over all queries returns it.
    """
    if args:
        raise TypeError(
            f'{type(attn).__name__} was called with positional inputs; folding needs them by '
            'keyword'
        )
    if inputs.pop('attn_mask', None) is not None:
        raise ValueError('folded query groups need no self-attention mask; got one')
    start, stop = layout.lead_queries, inputs['query'].shape[1] - layout.tail_queries
    if not layout.num_groups and stop > start:
        raise ValueError(f'{stop - start} queries between the lead and the tail, and no group')
    lead = dict(inputs, attn_mask=layout.lead_mask)
    folded, tail = dict(inputs), dict(inputs, attn_mask=layout.tail_mask)
    for name in FOLDED_INPUTS:
        x = inputs.get(name)
        if isinstance(x, Tensor):
            lead[name], tail[name] = x[:, :start], x[:, stop:]
            if layout.num_groups:
                folded[name] = fold_groups(x[:, start:stop], layout.num_groups)
    outputs = []  # each (bs, queries of the part, dim), in query-axis order
    if layout.lead_queries:
        outputs.append(attn(**lead))
    if layout.num_groups:
        outputs.append(unfold_groups(attn(**folded), layout.num_groups))
    if layout.tail_queries:
        outputs.append(attn(**tail))
    return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=1)


class GroupSelfAttentionMixin:
    """For a decoder layer: run ``self.self_attn`` masked as given, or folded.

    The one step a group decoder layer changes in mmdet's layer: its
    self-attention call goes through :meth:`group_self_attn`, which takes the
    layout as an ordinary argument. With ``group_layout=None`` it is exactly
    ``self.self_attn(**inputs)``.
    """

    def group_self_attn(self, group_layout: Optional[FoldedGroupLayout], **inputs: Any) -> Tensor:
        """``self.self_attn(**inputs)``, folded by ``group_layout`` when it is given."""
        if group_layout is None:
            return self.self_attn(**inputs)
        return folded_self_attention(self.self_attn, group_layout, **inputs)
