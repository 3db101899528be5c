"""Query groups in one decoder: where each sits, and the mask that keeps them apart.

D3ETR's fixed matching and DETRDistill's query-prior assignment both feed the
*teacher's* queries through the *student's* decoder. They run in the same
forward pass as the student's own queries, concatenated along the query axis,
and a block-diagonal self-attention mask keeps the groups apart (the group
itself, :class:`QueryGroup`, is in ``models/common``)::

                      keys ->
                      own (n0)     group 1 (n1)   group 2 (n2)
    queries  own     [ . . . . |  # # # # # #  |  # # # ]
      |      group 1 [ # # # # |  . . . . . .  |  # # # ]
      v      group 2 [ # # # # |  # # # # # #  |  . . . ]

    '.' = may attend (False)      '#' = masked, cannot see (True)

Convention (as in ``torch.nn.MultiheadAttention`` and mmdet's DINO layers):
a boolean mask entry ``True`` means *masked: this query cannot see that key*.
Self-attention is the only place where decoder queries interact (cross
attention, FFN, box refinement and the heads work per query), so this mask
alone makes each group's outputs independent of every other group.
"""

from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor

from ..common import QueryGroup


def group_slices(names: Sequence[str], sizes: Sequence[int]) -> Dict[str, slice]:
    """Where each group sits on the concatenated query axis.

    Args:
        names (Sequence[str]): Group names, in concatenation order.
        sizes (Sequence[int]): Number of queries of each group.

    Returns:
        dict[str, slice]: ``{name: slice(start, stop)}``.
    """
    if len(set(names)) != len(names):
        raise ValueError(f'query group names must be unique, got {list(names)}')
    slices, start = {}, 0
    for name, size in zip(names, sizes):
        slices[name] = slice(start, start + size)
        start += size
    return slices


def build_group_self_attn_mask(sizes: Sequence[int], device: torch.device) -> Tensor:
    """Block-diagonal self-attention mask over concatenated query groups.

    Args:
        sizes (Sequence[int]): Number of queries of each group, in order.
        device (torch.device): Device of the mask.

    Returns:
        Tensor: Bool mask of shape (N, N), N = sum(sizes); ``True`` = masked.
    """
    total = sum(sizes)
    mask = torch.ones(total, total, dtype=torch.bool, device=device)
    for block in group_slices([str(i) for i in range(len(sizes))], sizes).values():
        mask[block, block] = False  # a group sees itself only
    return mask


def build_padded_group_self_attn_mask(groups: Sequence[QueryGroup], num_heads: int) -> Tensor:
    """Per-image group mask that also hides padding slots.

    The block-diagonal mask of :func:`build_group_self_attn_mask`, plus: a
    padding slot (``valid`` False) is masked as a key for every query, and as
    a query sees only itself (a softmax needs one visible key)::

                    own      group 1 (slot 2 = padding)
        own       [ . . | # # # ]
        group 1   [ # # | . . # ]
                  [ # # | . . # ]
        padding   [ # # | # # . ]

    Returns:
        Tensor: Bool (bs * num_heads, N, N), image-major as attention layers
        expect for 3-D masks; ``True`` = masked.
    """
    sizes = [g.num_queries for g in groups]
    device = groups[0].query.device
    bs = groups[0].query.shape[0]
    valid = torch.cat(
        [
            torch.ones(bs, g.num_queries, dtype=torch.bool, device=device)
            if g.valid is None
            else g.valid.to(device=device, dtype=torch.bool)
            for g in groups
        ],
        dim=1,
    )  # (bs, N)
    mask = build_group_self_attn_mask(sizes, device).expand(bs, -1, -1).clone()
    mask |= ~valid[:, None, :]  # nobody sees padding
    mask |= ~valid[:, :, None]  # padding sees nothing ...
    eye = torch.eye(sum(sizes), dtype=torch.bool, device=device)
    mask &= ~(eye & ~valid[:, :, None])  # ... but itself
    return mask.repeat_interleave(num_heads, dim=0)


def split_groups(tensor: Tensor, slices: Dict[str, slice], dim: int) -> Dict[str, Tensor]:
    """Split a tensor along its query axis into ``{group name: part}``."""
    return {name: tensor.narrow(dim, s.start, s.stop - s.start) for name, s in slices.items()}


def concat_groups(groups: List[QueryGroup], field: str) -> Optional[Tensor]:
    """Concatenate one field of several groups along the query axis.

    Returns None when no group has the field; raises when only some have it.
    """
    values = [getattr(g, field) for g in groups]
    if all(v is None for v in values):
        return None
    if any(v is None for v in values):
        missing = [g.name for g, v in zip(groups, values) if v is None]
        raise ValueError(f'query groups {missing} have no `{field}` while others do')
    return torch.cat(values, dim=1)
