"""Stop on non-finite numbers before they reach the weights: teacher checkpoints and losses."""

from typing import Dict, List

import torch
from mmengine.logging import MessageHub
from torch import Tensor, nn

_MAX_NAMED = 5


class NonFiniteError(FloatingPointError):
    """A weight or a loss holds NaN or Inf."""


def nonfinite_tensors(tensors: Dict[str, Tensor]) -> List[str]:
    """Names of the floating-point tensors holding a NaN or an Inf (one host sync in all)."""
    floats = {k: v for k, v in tensors.items() if torch.is_floating_point(v) and v.numel()}
    if not floats:
        return []
    finite = torch.stack([torch.isfinite(v).all().to(v.device) for v in floats.values()])
    return [k for k, ok in zip(floats, finite.tolist()) if not ok]


def check_finite_weights(model: nn.Module, role: str, source: str) -> None:
    """Refuse a model whose weights (parameters and buffers) hold NaN or Inf.

    Args:
        model: The model just loaded.
        role: What it is (e.g. ``'teacher'``), for the message.
        source: Where the weights came from (e.g. ``"model.teacher_ckpt='t.pth'"``).

    Raises:
        NonFiniteError: Naming the first non-finite tensors.
    """
    bad = nonfinite_tensors(model.state_dict())
    if bad:
        more = f' and {len(bad) - _MAX_NAMED} more' if len(bad) > _MAX_NAMED else ''
        raise NonFiniteError(
            f'the {role} weights from {source} hold NaN/Inf values in '
            f'{", ".join(bad[:_MAX_NAMED])}{more}: the checkpoint is corrupt or was saved '
            f'after its training diverged. Use another {role} checkpoint.'
        )


def check_finite_loss(total: Tensor, losses: Dict[str, Tensor]) -> None:
    """Raise if the summed loss is not finite, naming the loss keys and the iteration.

    Called between the forward pass and the optimizer update (in ``parse_losses``), so the
    weights are left as they were. One host sync on ``total`` per step; the per-key check
    only runs after a failure.

    Args:
        total: The summed loss (shape ``()``), what is back-propagated.
        losses: The per-key values (``log_vars`` of ``parse_losses``), for the message.

    Raises:
        NonFiniteError: The loss is NaN or Inf.
    """
    if bool(torch.isfinite(total)):
        return
    bad = [k for k in nonfinite_tensors(losses) if k != 'loss'] or ['loss']
    hub = MessageHub.get_current_instance()
    step = hub.get_info('iter')
    where = f'at iteration {step + 1}' if isinstance(step, int) else 'in this step'
    raise NonFiniteError(
        f'non-finite loss {where} (before the optimizer update: the weights are unchanged): '
        f'{", ".join(f"{k}={float(losses[k].detach().mean())}" for k in bad)}. Check the '
        'learning rate / warm-up and gradient clipping (optim_wrapper.clip_grad), and the '
        "teacher's outputs; resume from the last checkpoint after fixing it."
    )
