"""Gather matched query pairs out of batched per-query tensors."""

import torch
from torch import Tensor


def gather_queries(x: Tensor, idx: Tensor) -> Tensor:
    """Rows ``idx`` of each image: x (bs, N, ...), idx (bs, K) -> (bs, K, ...)."""
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
