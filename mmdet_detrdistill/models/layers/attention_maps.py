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
"""

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

# level whose grid the deformable sampling density is drawn on (C5 of C3-C5 + extra)
DEFORMABLE_MAP_LEVEL = 2


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
