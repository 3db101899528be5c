"""Make a resumed run draw the random numbers an uninterrupted run would have drawn."""

from typing import Optional

import torch
from mmdet.registry import HOOKS
from mmengine.hooks import Hook

STATE_KEY = 'torch_rng_state'


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save torch's RNG state in every checkpoint; restore it when resuming.

    MMEngine restores weights, optimizer, schedulers and the data order on
    resume (its loop replays the data already seen, so data augmentation draws
    the same numbers), but not torch's RNG: dropout in the iterations after a
    resume would draw other masks than the uninterrupted run. The state (CPU,
    plus CUDA when available) is stored in ``meta['torch_rng_state']`` as
    tensors, and restored right before the first resumed iteration. A plain
    ``load_from`` (iteration 0) keeps the fresh seed. ``tools/train.py`` adds
    this hook to every run.
    """

    priority = 'VERY_LOW'  # save after other hooks changed the checkpoint

    def __init__(self) -> None:
        self._pending: Optional[dict] = None

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the current RNG state."""
        state = dict(cpu=torch.get_rng_state())
        if torch.cuda.is_available():
            state['cuda'] = torch.cuda.get_rng_state_all()
        checkpoint.setdefault('meta', {})[STATE_KEY] = state

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the saved state until training resumes."""
        self._pending = checkpoint.get('meta', {}).get(STATE_KEY)

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Restore the saved state before the first resumed iteration."""
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if runner.iter == 0:  # load_from, not resume
            return
        torch.set_rng_state(state['cpu'])
        if 'cuda' in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state['cuda'])
