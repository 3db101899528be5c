"""Pick queries of each image by index: matched pairs, queries per GT box."""

from typing import Optional, overload

import torch
from torch import Tensor


@overload
def gather_queries(x: Tensor, idx: Tensor) -> Tensor: ...


@overload
def gather_queries(x: None, idx: Tensor) -> None: ...


def gather_queries(x: Optional[Tensor], idx: Tensor) -> Optional[Tensor]:
    """Queries ``idx`` of each image: x (bs, N, ...), idx (bs, K) -> (bs, K, ...).

    ``out[b, k] = x[b, idx[b, k]]``. None (a field a query group does not
    have) passes through as None.
    """
    if x is None:
        return None
    batch = torch.arange(x.shape[0], device=x.device)[:, None]
    return x[batch, idx]


def gather_square(attn: Tensor, idx: Tensor) -> Tensor:
    """Rows and columns ``idx`` of self-attention maps.

    attn (bs, N, N), idx (bs, K) -> (bs, K, K) with out[b, i, j] =
    attn[b, idx[b, i], idx[b, j]]: the map among matched queries, reordered
    by the match.
    """
    rows = gather_queries(attn, idx)  # (bs, K, N)
    return rows.gather(2, idx[:, None, :].expand(-1, idx.shape[1], -1))
