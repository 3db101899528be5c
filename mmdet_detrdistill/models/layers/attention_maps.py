"""Head-averaged attention maps of mmdet's three kinds of decoder attention.

Each function returns maps of shape (bs, num_queries, num_keys), computed
*before* dropout (a student in train mode would otherwise see dropped maps),
from the inputs a forward hook sees. They never change the module's output.

* ``ConditionalAttention`` (Conditional DETR, DAB-DETR): its softmax weights
  are the input of its ``attn_drop`` module.
* mmcv ``MultiheadAttention`` (Deformable DETR self-attention): torch only
  returns post-dropout weights, so they are recomputed with
  ``F.multi_head_attention_forward`` in inference mode from the same inputs.
* ``MultiScaleDeformableAttention`` (Deformable DETR cross-attention) has no
  dense map: each query reads ``heads x levels x points`` bilinear samples
  with softmax weights. Its map here is the *sampling density*: every
  sample's weight splatted bilinearly at its location onto one feature grid,
  averaged over heads, so each row sums to 1 (less the mass sampled outside
  the image). The grid is the stride-32 (C5) level in mmdet's 4-level
  set-up, the grid Conditional and DAB-DETR attend over, so the maps are
  dense, comparable across layers and differentiable in both the weights and
  the sampling offsets.

:func:`kept_self_attention` takes the block of a self-attention map among the
queries a distillation keeps, renormalised over them (what D3ETR's
self-attention loss compares).
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..common import gather_square

# level whose grid the deformable sampling density is drawn on (C5 of C3-C5 + extra)
DEFORMABLE_MAP_LEVEL = 2
#: floor of a row sum in :func:`renormalise_rows`: a query that gives (almost) no weight to
#: the kept keys keeps a row of ~0 instead of dividing by 0 (a softmax row sums to 1, so any
#: row with real mass on the kept keys is far above it)
ROW_SUM_EPS = 1e-12


def conditional_attention_map(weights: Tensor, num_heads: int) -> Tensor:
    """(bs * heads, nq, nk) softmax weights -> head average (bs, nq, nk)."""
    n, q, k = weights.shape
    return weights.view(n // num_heads, num_heads, q, k).mean(1)


def multihead_attention_map(mha: nn.MultiheadAttention, args: tuple, kwargs: dict) -> Tensor:
    """Pre-dropout, head-averaged weights of a ``nn.MultiheadAttention`` call."""
    names = ('query', 'key', 'value')
    query, key, value = (kwargs[n] if n in kwargs else args[i] for i, n in enumerate(names))
    if mha.batch_first:
        query, key, value = (x.transpose(0, 1) for x in (query, key, value))
    _, weights = F.multi_head_attention_forward(
        query,
        key,
        value,
        mha.embed_dim,
        mha.num_heads,
        mha.in_proj_weight,
        mha.in_proj_bias,
        mha.bias_k,
        mha.bias_v,
        mha.add_zero_attn,
        0.0,
        mha.out_proj.weight,
        mha.out_proj.bias,
        training=False,
        key_padding_mask=kwargs.get('key_padding_mask'),
        need_weights=True,
        attn_mask=kwargs.get('attn_mask'),
        average_attn_weights=True,
    )
    return weights  # (bs, nq, nk)


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


def deformable_attention_map(attn: nn.Module, kwargs: dict) -> Tensor:
    """Sampling density of a ``MultiScaleDeformableAttention`` call, (bs, nq, H*W)."""
    locations, weights = deformable_sampling(attn, kwargs)
    shapes = kwargs['spatial_shapes']
    level = min(DEFORMABLE_MAP_LEVEL, shapes.shape[0] - 1)
    grid_hw = (int(shapes[level, 0]), int(shapes[level, 1]))
    return splat_density(locations.float(), weights.float(), grid_hw)  # fp32 under autocast


def renormalise_rows(block: Tensor, eps: float = ROW_SUM_EPS) -> Tensor:
    """Rows of an attention block rescaled to sum to 1, in fp32.

    ``out[b, i, j] = A[b, i, j] / max(sum_k A[b, i, k], eps)``; a row that
    already sums to 1 is unchanged, a row of zeros stays zero.

    Args:
        block (Tensor): Non-negative attention weights, (bs, K, K').
        eps (float): Floor of the row sums. Defaults to :data:`ROW_SUM_EPS`.

    Returns:
        Tensor: (bs, K, K') float32.
    """
    block = block.float()
    return block / block.sum(-1, keepdim=True).clamp_min(eps)


def kept_self_attention(attn: Tensor, idx: Tensor, eps: float = ROW_SUM_EPS) -> Tensor:
    """Self-attention among the kept queries ``idx``, renormalised over them.

    A model with N queries, of which K are kept (matched to the other
    model's), attends from each kept query over all N; the K x K block among
    the kept ones, reordered by ``idx``, is renormalised so that each row sums
    to 1 over the kept keys::

        out[b, i, j] = A[b, idx[b, i], idx[b, j]] / max(sum_k A[b, idx[b, i], idx[b, k]], eps)

    i.e. the attention the query would pay if the other N - K queries were
    not there. Two maps that agree on the kept queries up to that scale (a
    900-query teacher and the 300 student queries matched to 300 of its
    queries) thus give equal blocks, whatever either model attends to besides.
    When K = N (every query kept, as in fixed matching or an adaptive matching
    of equal query counts) the block is a reordering of the whole map and the
    renormalisation changes nothing.

    Args:
        attn (Tensor): Head-averaged softmax weights, (bs, N, N).
        idx (Tensor): Kept query indices per image, (bs, K), distinct.
        eps (float): Floor of the row sums (:func:`renormalise_rows`).
            Defaults to :data:`ROW_SUM_EPS`.

    Returns:
        Tensor: (bs, K, K) float32, rows summing to 1 (0 for a row with no
        weight on the kept queries).
    """
    return renormalise_rows(gather_square(attn, idx), eps)
