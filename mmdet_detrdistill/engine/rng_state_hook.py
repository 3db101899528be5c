"""Make a resumed run draw the random numbers an uninterrupted run would have drawn."""

from typing import List, Optional

import torch
from mmdet.registry import HOOKS
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import Hook
from torch.utils.data import DataLoader

STATE_KEY = 'torch_rng_state'


def current_rng_state() -> dict:
    """This process's torch RNG state: CPU, plus its current CUDA device when there is one."""
    state = dict(cpu=torch.get_rng_state())
    if torch.cuda.is_available():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    """Set this process's RNG to ``state`` (a CUDA state is ignored without CUDA)."""
    torch.set_rng_state(state['cpu'])
    cuda = state.get('cuda')
    if isinstance(cuda, (list, tuple)):  # written before per-rank states: one per device
        device = torch.cuda.current_device() if torch.cuda.is_available() else len(cuda)
        cuda = cuda[device] if device < len(cuda) else None
    if cuda is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(cuda)


@HOOKS.register_module()
class RNGStateHook(Hook):
    """Save every rank's torch RNG state in each checkpoint; restore it when resuming.

    MMEngine restores weights, optimizer, schedulers and the data order on resume (its loop
    replays the data already seen, so data augmentation draws the same numbers), but not
    torch's RNG: dropout in the iterations after a resume would draw other masks than the
    uninterrupted run. ``meta['torch_rng_state']`` holds ``dict(ranks=[state of rank 0,
    state of rank 1, ...])``, each ``dict(cpu=..., cuda=...)`` (``cuda``: the rank's current
    device, with CUDA only) as tensors; each rank restores its own entry right before the
    first resumed iteration. A plain ``load_from`` (iteration 0) keeps the fresh seed.

    The states are gathered from all ranks in ``before_save_checkpoint_all_ranks``, which
    :class:`AtomicCheckpointHook` calls on every rank before a save (mmengine's
    ``before_save_checkpoint`` runs on rank 0 alone, where no collective can be made). A
    checkpoint saved without that call (``save_best``, a plain ``CheckpointHook``) holds rank
    0's state only. Resuming on another number of ranks logs a warning and continues: rank
    ``r`` takes the saved state of rank ``r % saved_ranks`` (every rank goes on from a state
    the saved run reached; ranks beyond the saved ones share it with a lower rank). Set by
    ``configs/_base_/distill_runtime.py``.

    A ``DataLoader`` without a ``generator`` draws each new iterator's base seed from the
    global RNG: at an epoch boundary (or a validation) that draw falls between the saved state
    and the next training iteration, in the uninterrupted run only. So the train and val
    loaders get a generator of their own (seeded with the run's seed; mmengine's
    ``worker_init_fn`` reseeds workers anyway), and the global RNG is left to the model.
    """

    priority = 'VERY_LOW'  # save after other hooks changed the checkpoint

    def __init__(self) -> None:
        self._pending: Optional[dict] = None
        self._gathered: Optional[tuple] = None  # (iteration, states of all ranks)

    def before_train(self, runner) -> None:
        """Keep data loading off the global RNG (see above)."""
        loaders = [runner.train_dataloader]
        if runner.val_loop is not None:
            loaders.append(runner.val_loop.dataloader)
        for loader in loaders:
            if isinstance(loader, DataLoader) and loader.generator is None:
                loader.generator = torch.Generator().manual_seed(runner.seed)

    def before_save_checkpoint_all_ranks(self, runner) -> None:
        """Gather the RNG state of every rank (a collective: called on all ranks)."""
        self._gathered = (runner.iter, all_gather_object(current_rng_state()))

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Store the gathered states (rank 0 only)."""
        gathered, self._gathered = self._gathered, None
        states: List[dict] = [current_rng_state()]
        if gathered is not None and gathered[0] == runner.iter:
            states = gathered[1]
        checkpoint.setdefault('meta', {})[STATE_KEY] = dict(ranks=states)

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep this rank's saved state until training resumes."""
        saved = checkpoint.get('meta', {}).get(STATE_KEY)
        if saved is None:
            self._pending = None
            return
        states = saved['ranks'] if 'ranks' in saved else [saved]  # older: rank 0 only
        rank, world_size = get_dist_info()
        if len(states) != world_size:
            runner.logger.warning(
                f'The checkpoint holds the RNG states of {len(states)} rank(s) and this run has '
                f'{world_size}: rank r continues from the saved state of rank r % '
                f'{len(states)}. Training goes on, but does not repeat the saved run exactly.'
            )
        self._pending = states[rank % len(states)]

    def before_train_iter(self, runner, batch_idx: int, data_batch=None) -> None:
        """Restore the saved state before the first resumed iteration."""
        if self._pending is None:
            return
        state, self._pending = self._pending, None
        if runner.iter == 0:  # load_from, not resume
            return
        restore_rng_state(state)
