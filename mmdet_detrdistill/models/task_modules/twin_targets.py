"""Each student query's targets under OD-DETR's matching distillation: its own GT and its twin's.

OD-DETR (arXiv 2406.05791, Sec. 3): the student and its EMA teacher are matched to the GT
separately; query i of the student and its *twin*, query i of the teacher, may be matched to
different GT boxes, and student query i learns from both.
"""

from dataclasses import dataclass

import torch
from mmdet.models.task_modules import AssignResult
from torch import Tensor


@dataclass
class QueryTargets:
    """One image's (query, GT) target pairs: pair p trains query ``queries[p]`` on GT
    ``gts[p]`` with weight ``weights[p]``.

    Attributes:
        queries (Tensor): Query indices, (P,) long.
        gts (Tensor): GT indices of the image, (P,) long.
        weights (Tensor): Pair weights, (P,) float: 1 for the query's own match,
            ``twin_weight`` for a GT only its twin was matched to.
    """

    queries: Tensor
    gts: Tensor
    weights: Tensor

    def __len__(self) -> int:
        return len(self.queries)


def matched_pairs(result: AssignResult) -> Tensor:
    """(query, GT) of every matched query of an assignment, (K, 2) long, by query."""
    queries = torch.nonzero(result.gt_inds > 0).flatten()
    return torch.stack([queries, result.gt_inds[queries] - 1], dim=1)


def twin_query_targets(own: AssignResult, twin: AssignResult, twin_weight: float) -> QueryTargets:
    """The pairs of one image: the student's own matches, then its twins' other matches.

    Query i of ``own`` (the student's matching) and query i of ``twin`` (the
    teacher's, on the same queries) are one query. Every own match (i, j) is a
    pair of weight 1; every twin match (i, k) with k != the GT that query i
    matched itself (none, or another) is a pair of weight ``twin_weight``; a
    twin that matched the same GT adds nothing. ``twin_weight = 0`` leaves the
    own matches only.

    Args:
        own (AssignResult): The student's assignment (``gt_inds``: j + 1 for GT
            j, 0 for none), N queries.
        twin (AssignResult): The teacher's assignment of the same N queries.
        twin_weight (float): Weight of a twin's pair, in [0, 1].

    Returns:
        QueryTargets: Own pairs first (by query), then the twins' (by query).
    """
    own_pairs, twin_pairs = matched_pairs(own), matched_pairs(twin)
    same = own.gt_inds[twin_pairs[:, 0]] - 1 == twin_pairs[:, 1]
    twin_pairs = twin_pairs[~same] if twin_weight > 0 else twin_pairs[:0]
    pairs = torch.cat([own_pairs, twin_pairs])
    device = pairs.device
    weights = torch.cat(
        [
            torch.ones(len(own_pairs), device=device),
            torch.full((len(twin_pairs),), twin_weight, device=device),
        ]
    )
    return QueryTargets(pairs[:, 0], pairs[:, 1], weights)
