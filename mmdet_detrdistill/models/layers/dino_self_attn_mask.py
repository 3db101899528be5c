"""DINO's decoder self-attention mask with query groups: denoising part, own group, extra groups.

In training, mmdet's DINO prepends contrastive-denoising (DN) queries to its
matching queries and keeps them apart with ``CdnQueryGenerator``'s mask (DINO,
Zhang et al., 2022, Sec. 3.3 / mmdet ``generate_dn_mask``): the DN groups
cannot see each other, the matching queries cannot see any DN query, a DN
query sees its own DN group and the matching queries. Extra query groups
(fixed matching, query prior, OD-DETR's initial and auxiliary groups) come
after the own (matching) group and see only themselves::

                     keys ->
                     DN (d)           own (n0)   group 1 (n1)   group 2 (n2)
    queries  DN      [ dn groups     | . . . . |  # # # # #   |  # # # ]
      |      own     [ # # # # # # # | . . . . |  # # # # #   |  # # # ]
      v      group 1 [ # # # # # # # | # # # # |  . . . . .   |  # # # ]
             group 2 [ # # # # # # # | # # # # |  # # # # #   |  . . . ]

    '.' = may attend (False)      '#' = masked, cannot see (True)
    'dn groups' = block diagonal over the DN groups (mmdet's mask, unchanged)

The top-left (d + n0) square is exactly mmdet's mask; the group part (from
``own`` on) is :func:`build_group_self_attn_mask` (or its padded, per-image
form). So the DN queries and the own group compute what mmdet's DINO computes,
and no extra group reaches them or is reached by them.

The mask is block diagonal over [DN + own | group 1 | group 2 | ...], so the
decoder need not build it: each block can run as a self-attention call of
its own, with the same outputs (``GroupDINO.denoising_group_layout``, a
:class:`.FoldedGroupLayout` with a *lead*, :mod:`.folded_self_attention`).
DN + own stay in one call under mmdet's mask, exactly as mmdet's DINO calls
it; extra groups of one size, unpadded, are folded into the batch axis; the
others (another size, padded) form a tail under their own mask::

    query axis (bs, d + n0 + G*n + t, dim):

      [ DN (d) | own (n0) ][ group 1 (n) | group 2 (n) ][ aux0 aux1 + padding (t) ]
       ___________________  ___________________________  _________________________
       call 1: lead          call 2: folded              call 3: tail
       (bs, d+n0, dim)       (bs*G, n, dim), G = 2       (bs, t, dim)
       mask: dn_mask         no mask (row b*G + g:       mask: the tail's groups
       (mmdet's, unchanged)  group g+1 of image b)       (padded: per image)

      outputs concatenated back in query-axis order: (bs, d + n0 + G*n + t, dim)

Scores: (d + n0)^2 + G n^2 + t^2 per image and head instead of
(d + n0 + G*n + t)^2, of which all but these blocks were masked; also while
attention maps are recorded (one record per call, each group's block read from
its call: :mod:`.group_attention_blocks`). ``fold_group_self_attention=False``
runs the whole mask in one call.

Convention (as in ``torch.nn.MultiheadAttention`` and mmdet's DINO): ``True`` =
masked, this query cannot see that key.
"""

from typing import Optional, Sequence

import torch
from torch import Tensor

from ..common import QueryGroup
from .query_groups import build_group_self_attn_mask, build_padded_group_self_attn_mask


def build_dino_self_attn_mask(
    dn_mask: Optional[Tensor], groups: Sequence[QueryGroup], num_heads: int
) -> Optional[Tensor]:
    """The self-attention mask of DN queries (if any) followed by ``groups``.

    Args:
        dn_mask (Tensor, optional): mmdet's mask over the DN queries and the
            own group, bool (d + n0, d + n0), as ``CdnQueryGenerator`` makes
            it; None when there are no DN queries (eval mode).
        groups (Sequence[QueryGroup]): The own group first, then the extra
            groups, in query-axis order (after the DN queries).
        num_heads (int): Self-attention heads, for per-image masks.

    Returns:
        Tensor or None: Bool (N, N), N = d + sum(n_i); or (bs * num_heads, N,
        N), image-major, when a group is padded per image. ``dn_mask``
        unchanged when ``groups`` is the own group alone.
    """
    if len(groups) == 1 and groups[0].valid is None:
        return dn_mask
    num_dn = 0 if dn_mask is None else dn_mask.shape[-1] - groups[0].num_queries
    device = groups[0].query.device
    if any(g.valid is not None for g in groups):
        group_mask = build_padded_group_self_attn_mask(groups, num_heads)  # (bs*h, G, G)
    else:
        group_mask = build_group_self_attn_mask([g.num_queries for g in groups], device)
    total = num_dn + group_mask.shape[-1]
    mask = torch.ones(*group_mask.shape[:-2], total, total, dtype=torch.bool, device=device)
    mask[..., num_dn:, num_dn:] = group_mask  # groups see their own group only
    if dn_mask is not None:  # DN queries and the own group: mmdet's mask, unchanged
        own_end = num_dn + groups[0].num_queries
        mask[..., :own_end, :own_end] = dn_mask.to(device)
    return mask
