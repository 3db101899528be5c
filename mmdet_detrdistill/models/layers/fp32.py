"""Run a region in full precision even inside an autocast block."""

from contextlib import contextmanager
from typing import Iterator

import torch
from torch import Tensor


@contextmanager
def autocast_off(like: Tensor) -> Iterator[None]:
    """Disable autocast on ``like``'s device inside the block.

    Matching costs and distillation losses are computed in fp32 under AMP:
    cast the inputs with ``.float()`` and run the maths here, so that no op
    is silently lowered to fp16/bf16 (costs that overflow, or soft labels
    that lose their small differences).
    """
    with torch.autocast(device_type=like.device.type, enabled=False):
        yield
