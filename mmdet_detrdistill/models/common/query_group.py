"""A query group: an extra set of decoder queries that runs next to a model's own.

D3ETR's fixed matching and DETRDistill's query-prior assignment feed the
*teacher's* queries through the *student's* decoder; OD-DETR feeds the
student's queries through the teacher's. Each such set is a
:class:`QueryGroup`, named by one of the constants below. How groups are
concatenated and kept apart (the block-diagonal self-attention mask) is in
``layers/query_groups.py``.
"""

from dataclasses import dataclass, fields, replace
from typing import Optional

from torch import Tensor

from .gather import gather_queries

OWN_GROUP = 'own'
"""A model's own queries, as its config builds them."""

TEACHER_QUERY_GROUP = 'teacher_queries'
"""The teacher's queries run through the student's decoder (D3ETR fixed matching, DETRDistill
query prior)."""

STUDENT_QUERY_GROUP = 'student_queries'
"""The student's queries run through the teacher's decoder (OD-DETR teacher-guided assignment)."""


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
        valid (Tensor, optional): Bool (bs, n): False marks padding slots of
            a group whose size varies per image (e.g. queries per GT box).
            Padding is invisible to every query and sees only itself.
            Defaults to None (all valid).
        targets (Tensor, optional): Long (bs, n): the index of the GT box of
            its image that each query is trained to predict, -1 for padding
            (OD-DETR's auxiliary groups). Defaults to None (no GT target).
        teacher_index (Tensor, optional): Long (bs, n), for a group of the
            teacher's queries: the teacher query each one is, where the group
            keeps some of them (:meth:`take`); the ``'index'`` pairing pairs
            query k with teacher query ``teacher_index[b, k]``. Defaults to
            None (query k is teacher query k).
    """

    name: str
    query: Tensor
    query_pos: Optional[Tensor] = None
    reference: Optional[Tensor] = None
    valid: Optional[Tensor] = None
    targets: Optional[Tensor] = None
    teacher_index: Optional[Tensor] = None

    @property
    def num_queries(self) -> int:
        """Number of queries in the group."""
        return self.query.shape[1]

    def take(self, idx: Tensor) -> 'QueryGroup':
        """Queries ``idx`` (bs, K) of each image, every per-query field gathered.

        ``out.<field>[b, k] = self.<field>[b, idx[b, k]]``; ``teacher_index``
        follows (starting from ``idx`` itself), so the ``'index'`` pairing
        still pairs each kept query with the teacher query it is.
        """
        index = idx if self.teacher_index is None else gather_queries(self.teacher_index, idx)
        per_query = {
            f.name: gather_queries(getattr(self, f.name), idx)
            for f in fields(self)
            if f.name not in ('name', 'teacher_index')
        }
        return replace(self, teacher_index=index, **per_query)
