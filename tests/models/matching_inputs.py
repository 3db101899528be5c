"""Random decoder-layer predictions for matcher tests (not a test module)."""

from typing import Tuple

import torch
from torch import Tensor


def random_layers(
    num_layers: int, bs: int, ns: int, nt: int, num_classes: int = 5, seed: int = 0
) -> Tuple[Tensor, Tensor, Tensor, Tensor]:
    """Student logits and boxes, teacher logits and boxes: (L, bs, N, C) logits, spread
    (x3), and (L, bs, N, 4) normalised cxcywh boxes inside the image."""
    g = torch.Generator().manual_seed(seed)

    def preds(n: int) -> Tuple[Tensor, Tensor]:
        logits = torch.randn(num_layers, bs, n, num_classes, generator=g) * 3
        cxcy = torch.rand(num_layers, bs, n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(num_layers, bs, n, 2, generator=g) * 0.3 + 0.05
        return logits, torch.cat([cxcy, wh], -1)

    return (*preds(ns), *preds(nt))
