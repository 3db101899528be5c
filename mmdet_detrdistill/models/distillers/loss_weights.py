"""Refuse distillation loss weights that would train the student away from the teacher."""

import math
from numbers import Real
from typing import Iterator, Tuple

from torch import nn

from ..components.config_keys import ComponentKeys


def _weights(component: nn.Module) -> Iterator[Tuple[str, object]]:
    """``(module path, loss_weight)`` of the component and every loss inside it."""
    for path, module in component.named_modules():
        if hasattr(module, 'loss_weight'):
            yield path, module.loss_weight


def check_loss_weights(component: nn.Module, where: ComponentKeys) -> None:
    """Every ``loss_weight`` of a built component must be a finite number >= 0.

    A negative weight maximises the distance to the teacher, a NaN or infinite one poisons
    the sum: both used to train on silently. Zero is allowed (the loss is computed and
    logged but does not train); ``None`` in the config is how a loss is switched off.

    Raises:
        ValueError: Naming the config key (``where``), the loss and the value.
    """
    for path, weight in _weights(component):
        ok = isinstance(weight, Real) and not isinstance(weight, bool)
        if ok and math.isfinite(weight) and weight >= 0:
            continue
        loss = f' ({path})' if path else ''
        raise ValueError(
            f'{where.config}{loss}: loss_weight={weight!r} must be a finite number >= 0 '
            '(a negative weight pushes the student away from what it distils). Set a '
            f'positive weight, or switch the loss off with None ({where.switch_off} for the '
            'whole component).'
        )
