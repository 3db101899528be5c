"""Matching-cost helpers shared by the matchers and assigners."""

import torch
import torch.nn.functional as F
from torch import Tensor

FINITE_COST_LIMIT = 1e8
"""Bound of every cost a Hungarian solver sees."""


def clamp_finite(cost: Tensor, limit: float = FINITE_COST_LIMIT) -> Tensor:
    """Non-finite costs clamped to +-``limit``: the solver never sees nan or inf.

    nan and +inf become ``limit``, -inf ``-limit``; finite costs beyond the
    limit are clamped too.
    """
    return torch.nan_to_num(cost, nan=limit, posinf=limit, neginf=-limit).clamp(-limit, limit)


def soft_label_bce_cost(logits: Tensor, soft_labels: Tensor) -> Tensor:
    """Cost of predicting soft class labels with sigmoid logits, all pairs.

    For prediction i with logits x_i (C classes) and target j with soft
    labels p_j in [0, 1] (e.g. a teacher's sigmoid scores)::

        cost[..., i, j] = sum_c BCEWithLogits(x_ic, p_jc)
                        = sum_c softplus(x_ic) - (x @ p^T)[i, j]

    computed with one matrix product, no (N, M, C) tensor, in fp32.

    Args:
        logits (Tensor): Prediction logits, (N, C) or (bs, N, C).
        soft_labels (Tensor): Target soft labels, (M, C) or (bs, M, C).

    Returns:
        Tensor: Unweighted costs, (N, M) or (bs, N, M).
    """
    logits, soft_labels = logits.float(), soft_labels.float()
    if logits.shape[-1] != soft_labels.shape[-1]:
        raise ValueError(
            f'SoftLabelBCECost: predictions have {logits.shape[-1]} classes but the soft '
            f'labels have {soft_labels.shape[-1]}; teacher and student must share classes'
        )
    return F.softplus(logits).sum(-1, keepdim=True) - logits @ soft_labels.transpose(-1, -2)
