"""Run a region in full precision even inside an autocast block."""

from contextlib import nullcontext
from typing import ContextManager, Union

import torch
from torch import Tensor


def autocast_off(like: Union[Tensor, torch.device]) -> ContextManager:
    """Autocast disabled on ``like``'s device (or on the device ``like``) inside the block.

    Matching costs and distillation losses are computed in fp32 under AMP:
    cast the inputs with ``.float()`` and run the maths inside this block, so
    that no op is silently lowered to fp16/bf16 (costs that overflow, or soft
    labels that lose their small differences). A no-op context on a device
    where autocast does not exist.
    """
    device = like.device if isinstance(like, Tensor) else like
    try:
        return torch.autocast(device_type=device.type, enabled=False)
    except RuntimeError:
        return nullcontext()
