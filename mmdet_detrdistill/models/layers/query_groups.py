"""Query groups: extra sets of decoder queries that run next to the student's own.

D3ETR's fixed matching and DETRDistill's query-prior assignment both feed the
*teacher's* queries through the *student's* decoder. They run in the same
forward pass as the student's own queries, concatenated along the query axis,
and a block-diagonal self-attention mask keeps the groups apart::

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

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import torch
from torch import Tensor


@dataclass
class QueryGroup:
    """One group of decoder queries, in the layout of the student's family.

    Args:
        name (str): Group name, used in loss keys and layouts.
        query (Tensor): Content queries, shape (bs, n, dim).
        query_pos (Tensor, optional): Positional queries, shape (bs, n, dim).
            Used by Conditional DETR. Defaults to None.
        reference (Tensor, optional): Reference points or anchor boxes
            (sigmoid space), shape (bs, n, 2) or (bs, n, 4). Used by DAB-DETR
            and Deformable DETR. Defaults to None.
    """

    name: str
    query: Tensor
    query_pos: Optional[Tensor] = None
    reference: Optional[Tensor] = None

    @property
    def num_queries(self) -> int:
        """Number of queries in the group."""
        return self.query.shape[1]


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
