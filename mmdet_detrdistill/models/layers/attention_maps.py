"""What mmdet's three kinds of decoder attention compute, read from a forward hook's inputs.

The functions here take what a hook sees and return the per-head pieces of the
head-averaged attention map ``A`` (pre-dropout: a student in train mode would
otherwise see dropped weights); :mod:`.attention_records` keeps them and forms
rows of ``A`` when the losses know which queries they need. They never change
the module's output.

* ``ConditionalAttention`` (Conditional DETR, DAB-DETR): its per-head softmax
  weights are the input of its ``attn_drop`` module (nothing to compute).
* mmcv ``MultiheadAttention`` (Deformable DETR, DINO self-attention): torch
  returns no pre-dropout weights, so :func:`multihead_query_key` recomputes
  the per-head queries and keys, and the masks, of ``F.multi_head_attention_forward``
  from the same inputs: ``A = mean_h softmax(q_h k_h^T / sqrt(d_h) + mask)``.
* ``MultiScaleDeformableAttention`` (Deformable DETR, DINO cross-attention) has
  no dense map: each query reads ``heads x levels x points`` bilinear samples
  with softmax weights (:func:`deformable_sampling`). Its map is the *sampling
  density* (:func:`splat_density`): every sample's weight splatted bilinearly
  at its location onto one feature grid, averaged over heads, so each row sums
  to 1 (less the mass sampled outside the image). The grid is the stride-32
  (C5) level in mmdet's 4-level set-up (:func:`density_grid`), the grid
  Conditional and DAB-DETR attend over, so the maps are dense, comparable
  across layers and differentiable in both the weights and the sampling offsets.

:func:`renormalise_rows` rescales the block of a self-attention map among the
queries a distillation keeps (what D3ETR's self-attention loss compares).
"""

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# level whose grid the deformable sampling density is drawn on (C5 of C3-C5 + extra)
DEFORMABLE_MAP_LEVEL = 2
#: floor of a row sum in :func:`renormalise_rows`: a query that gives (almost) no weight to
#: the kept keys keeps a row of ~0 instead of dividing by 0 (a softmax row sums to 1, so any
#: row with real mass on the kept keys is far above it)
ROW_SUM_EPS = 1e-12


def multihead_query_key(
    mha: nn.MultiheadAttention, args: tuple, kwargs: dict
) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
    """Per-head queries and keys, and the masks, of a ``nn.MultiheadAttention`` call.

    As ``F.multi_head_attention_forward`` forms them: ``q_h = (x W_q + b_q)_h / sqrt(d_h)``,
    ``k_h = (y W_k + b_k)_h``, so that head h's scores are ``q_h k_h^T``.

    Returns:
        tuple: ``q`` (bs, heads, nq, d_h) scaled; ``k`` (bs, heads, nk, d_h);
        ``attn_mask`` as (1, 1, nq, nk) or (bs, heads, nq, nk) and
        ``key_padding_mask`` as (bs, 1, 1, nk), each bool (``True`` = masked)
        or float (added to the scores), or None. Views: no mask is copied.
    """
    if mha.bias_k is not None or mha.add_zero_attn or not mha._qkv_same_embed_dim:
        raise NotImplementedError(
            'recording attention maps of nn.MultiheadAttention needs packed q/k/v projections '
            'without bias_k/bias_v or add_zero_attn (as mmcv builds it)'
        )
    names = ('query', 'key')
    query, key = (kwargs[n] if n in kwargs else args[i] for i, n in enumerate(names))
    if not mha.batch_first:
        query, key = query.transpose(0, 1), key.transpose(0, 1)  # (bs, n, dim)
    (bs, nq, dim), nk, heads = query.shape, key.shape[1], mha.num_heads
    w_q, w_k, _ = mha.in_proj_weight.chunk(3)
    b_q, b_k, _ = (None,) * 3 if mha.in_proj_bias is None else mha.in_proj_bias.chunk(3)
    q = F.linear(query, w_q, b_q).view(bs, nq, heads, dim // heads).transpose(1, 2)
    k = F.linear(key, w_k, b_k).view(bs, nk, heads, dim // heads).transpose(1, 2)
    attn_mask, padding = kwargs.get('attn_mask'), kwargs.get('key_padding_mask')
    if attn_mask is not None:  # (nq, nk) or (bs * heads, nq, nk), image-major
        batch = (1, 1) if attn_mask.dim() == 2 else (bs, heads)
        attn_mask = attn_mask.view(*batch, nq, nk)
    if padding is not None:
        padding = padding.view(bs, 1, 1, nk)
    return q * (dim // heads) ** -0.5, k, attn_mask, padding


def deformable_sampling(attn: nn.Module, kwargs: dict) -> Tuple[Tensor, Tensor]:
    """Sampling locations (bs, nq, heads, levels, points, 2) in [0, 1] and their
    softmax weights (bs, nq, heads, levels, points), as mmcv computes them."""
    query = kwargs['query']
    if kwargs.get('query_pos') is not None:
        query = query + kwargs['query_pos']
    ref, shapes = kwargs['reference_points'], kwargs['spatial_shapes']
    bs, nq, _ = query.shape
    h, lv, pt = attn.num_heads, attn.num_levels, attn.num_points
    offsets = attn.sampling_offsets(query).view(bs, nq, h, lv, pt, 2)
    weights = attn.attention_weights(query).view(bs, nq, h, lv * pt).softmax(-1)
    weights = weights.view(bs, nq, h, lv, pt)
    if ref.shape[-1] == 2:
        normalizer = torch.stack([shapes[..., 1], shapes[..., 0]], -1)
        locations = ref[:, :, None, :, None, :] + offsets / normalizer[None, None, None, :, None]
    else:
        locations = ref[:, :, None, :, None, :2] + offsets / pt * ref[:, :, None, :, None, 2:] * 0.5
    return locations, weights


def density_grid(spatial_shapes: Tensor) -> Tuple[int, int]:
    """(H, W) of the level the sampling density is drawn on (:data:`DEFORMABLE_MAP_LEVEL`,
    or the last level of fewer)."""
    level = min(DEFORMABLE_MAP_LEVEL, spatial_shapes.shape[0] - 1)
    return int(spatial_shapes[level, 0]), int(spatial_shapes[level, 1])


def splat_density(locations: Tensor, weights: Tensor, grid_hw: Tuple[int, int]) -> Tensor:
    """Bilinear splat of weighted samples onto an (H, W) grid.

    Args:
        locations (Tensor): (bs, nq, heads, levels, points, 2), (x, y) in [0, 1]
            with mmcv's ``grid_sample(align_corners=False)`` convention.
        weights (Tensor): (bs, nq, heads, levels, points).
        grid_hw (tuple[int, int]): Grid size.

    Returns:
        Tensor: (bs, nq, H * W), averaged over heads.
    """
    height, width = grid_hw
    bs, nq, heads = weights.shape[:3]
    x = locations[..., 0] * width - 0.5
    y = locations[..., 1] * height - 0.5
    x0, y0 = x.floor(), y.floor()
    fx, fy = x - x0, y - y0
    density = weights.new_zeros(bs, nq, height * width)
    for dx, dy, share in (
        (0, 0, (1 - fx) * (1 - fy)),
        (1, 0, fx * (1 - fy)),
        (0, 1, (1 - fx) * fy),
        (1, 1, fx * fy),
    ):
        xi, yi = x0 + dx, y0 + dy
        inside = (xi >= 0) & (xi < width) & (yi >= 0) & (yi < height)
        index = (yi.clamp(0, height - 1) * width + xi.clamp(0, width - 1)).long()
        density = density.scatter_add(2, index.flatten(2), (weights * share * inside).flatten(2))
    return density / heads


def renormalise_rows(block: Tensor, eps: float = ROW_SUM_EPS) -> Tensor:
    """Rows of an attention block rescaled to sum to 1, in fp32.

    ``out[b, i, j] = A[b, i, j] / max(sum_k A[b, i, k], eps)``; a row that
    already sums to 1 is unchanged, a row of zeros stays zero.

    D3ETR's self-attention loss compares the block among the K kept
    (matched) queries of a model with N queries, ``A[b, idx[b, i], idx[b, j]]``,
    renormalised so: the attention a query would pay if the other N - K
    queries were not there. Two maps that agree on the kept queries up to that
    scale (a 900-query teacher and the 300 student queries matched to 300 of
    its queries) thus give equal blocks, whatever either model attends to
    besides. With K = N (every query kept) it changes nothing.

    Args:
        block (Tensor): Non-negative attention weights, (bs, K, K').
        eps (float): Floor of the row sums. Defaults to :data:`ROW_SUM_EPS`.

    Returns:
        Tensor: (bs, K, K') float32.
    """
    block = block.float()
    return block / block.sum(-1, keepdim=True).clamp_min(eps)
