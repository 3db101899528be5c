"""Which recorded self-attention call holds each query group's block.

A decoder layer runs its self-attention in one or more calls
(:class:`~.folded_self_attention.FoldedGroupLayout`), in query-axis order, and the
recorder keeps one record per call. A group's block (its queries' rows at its
queries' keys) is then found in the call that ran it::

    query axis:  [ DN (d) | own (n0) | group 1 (n) | group 2 (n) | tail (t)     ]
    calls:       lead (bs, d+n0, .)   folded (bs*G, n, n)          tail (bs, t, t)
    own:         lead call, queries offset by d
    group g:     folded call viewed (bs, G, n, n), group g - 1, offset 0
    tail group:  tail call, offset slice.start - tail start

One masked call (no layout) is the lead case with every group in it. A call of
B = bs * G rows and n queries covers G * n queries of the axis: G > 1 only for
a folded call, where group g of image b is row b * G + g.
"""

from dataclasses import dataclass
from typing import Dict, Optional, Sequence

from torch import Tensor

from .attention_records import AttentionRecord


@dataclass
class GroupBlock:
    """A group's queries are queries ``offset .. offset + n`` of ``record`` (bs, nq, nk)."""

    record: AttentionRecord
    offset: int = 0

    def rows(self, idx: Tensor, cols: Optional[Tensor] = None) -> Tensor:
        """Rows ``idx`` (bs, K) of the group, at its keys ``cols`` (bs, K'), (bs, K, K');
        over all keys of the call without ``cols``, (bs, K, nk)."""
        cols = None if cols is None else cols + self.offset
        return self.record.rows(idx + self.offset, cols)


def group_blocks(
    calls: Sequence[AttentionRecord], slices: Dict[str, slice], batch_size: int
) -> Dict[str, GroupBlock]:
    """Each group's :class:`GroupBlock` among one layer's recorded calls.

    Args:
        calls (Sequence[AttentionRecord]): The layer's self-attention records, one per
            call, in call (= query-axis) order, together covering every query.
        slices (dict[str, slice]): Where each group sits on the query axis (after any
            leading queries that are no group, e.g. DINO's DN queries).
        batch_size (int): bs, the number of images.

    Raises:
        ValueError: The calls do not cover the query axis, or a group is split
            between calls or folded rows.
    """
    spans, start = [], 0  # (start, stop, G, call) on the query axis
    for call in calls:
        rows, nq, _ = call.size()
        spans.append((start, start + rows // batch_size * nq, rows // batch_size, call))
        start = spans[-1][1]
    if start != max((s.stop for s in slices.values()), default=0):
        raise ValueError(f'recorded self-attention covers {start} queries, groups {slices}')
    blocks = {}
    for name, s in slices.items():
        span = next((p for p in spans if p[0] <= s.start and s.stop <= p[1]), None)
        if span is None:
            raise ValueError(f'group {name!r} {s} is split between self-attention calls')
        begin, _, num_groups, call = span
        if num_groups == 1:
            blocks[name] = GroupBlock(call, s.start - begin)
            continue
        n = call.size()[1]
        if (s.start - begin) % n or s.stop - s.start != n:
            raise ValueError(f'group {name!r} {s} is not one row of a call folded by {n}')
        folded = call.view(batch_size, num_groups, n, call.size()[2])
        blocks[name] = GroupBlock(folded.group((s.start - begin) // n))
    return blocks
