"""Image sizes as box scales: normalised boxes to pixels and back."""

from typing import Sequence, Union

import torch
from torch import Tensor


def pixel_scale(like: Union[Tensor, torch.device], img_metas: Sequence[dict]) -> Tensor:
    """Each image's ``(w, h, w, h)`` from its ``img_shape``, (bs, 1, 4) fp32.

    Multiply normalised boxes (bs, N, 4) by it to get pixels.

    Args:
        like (Tensor | torch.device): The result goes on this tensor's device
            (or this device).
        img_metas (Sequence[dict]): Image metas with ``img_shape`` (h, w, ...).

    Returns:
        Tensor: (bs, 1, 4) float32.
    """
    device = like.device if isinstance(like, Tensor) else like
    sizes = [(w, h, w, h) for h, w in (m['img_shape'][:2] for m in img_metas)]
    return torch.tensor(sizes, dtype=torch.float32, device=device).reshape(-1, 1, 4)
