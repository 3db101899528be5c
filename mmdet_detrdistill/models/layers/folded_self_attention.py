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
concatenated. The folded head and the tail cannot see each other either (they
are separate calls)::

    query axis (bs, G*n + t, dim):  [ own | group 1 | tail (t, e.g. aux0 aux1 + padding) ]
                                      |_________|       |
                                      folded call        second call, tail mask (t x t)
                                      (bs*G, n, dim)     (bs, t, dim)

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
    """How a decoder's self-attention runs its query groups: folded, plus a tail.

    Args:
        num_groups (int): Number G of leading, equal-size, unpadded groups that
            run folded into the batch axis (own group first).
        tail_queries (int): Number of queries after them that run unfolded, in
            a second call. Defaults to 0.
        tail_mask (Tensor, optional): Self-attention mask of the tail, bool
            (t, t) or (bs * num_heads, t, t), ``True`` = masked. Defaults to
            None (the tail's queries all see each other).
    """

    num_groups: int
    tail_queries: int = 0
    tail_mask: Optional[Tensor] = None

    def __post_init__(self) -> None:
        if self.tail_mask is not None and self.tail_mask.shape[-1] != self.tail_queries:
            raise ValueError(
                f'tail_mask covers {self.tail_mask.shape[-1]} queries, tail_queries is '
                f'{self.tail_queries}'
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
    """Call ``attn`` on the folded head of the queries, then on the tail; concatenate.

    Args:
        attn (nn.Module): A batch-first self-attention module.
        layout (FoldedGroupLayout): The groups' layout on the query axis.
        **inputs: The module's keyword inputs as the decoder layer gives them
            for all queries (``query``, ``key``, ``query_pos``, ...), without
            ``attn_mask``: the layout replaces it. Inputs of
            :data:`FOLDED_INPUTS` are split and folded; others pass unchanged.

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
    head, tail = dict(inputs), dict(inputs, attn_mask=layout.tail_mask)
    for name in FOLDED_INPUTS:
        x = inputs.get(name)
        if isinstance(x, Tensor):
            stop = x.shape[1] - layout.tail_queries
            head[name] = fold_groups(x[:, :stop], layout.num_groups)
            tail[name] = x[:, stop:]
    output = unfold_groups(attn(**head), layout.num_groups)  # (bs, G*n, dim)
    if not layout.tail_queries:
        return output
    return torch.cat([output, attn(**tail)], dim=1)


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
