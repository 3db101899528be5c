"""One rank of the per-rank RNG-state test (gloo), started by torchrun.

Usage: python -m torch.distributed.run --nproc_per_node 2 rng_state_worker.py WORK_DIR
Each rank seeds its own RNG, then RNGStateHook saves as in a checkpoint (the states are
gathered on every rank, rank 0 writes ``ckpt.pth``); each rank notes the numbers it draws
next, draws more, resumes from ``ckpt.pth`` and draws again: ``rank{r}.pth`` holds both.
"""

import os
import sys
from types import SimpleNamespace

import torch
import torch.distributed as dist
from mmengine.logging import MMLogger

from mmdet_detrdistill.engine import RNGStateHook
from mmdet_detrdistill.engine.atomic_checkpoint_hook import ALL_RANKS_HOOK


def main(work_dir: str) -> None:
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    torch.manual_seed(100 + rank)
    torch.rand(3)
    runner = SimpleNamespace(iter=7, logger=MMLogger.get_instance(f'rng_{rank}'))
    hook = RNGStateHook()
    getattr(hook, ALL_RANKS_HOOK)(runner)  # as AtomicCheckpointHook calls it, on every rank
    path = os.path.join(work_dir, 'ckpt.pth')
    if rank == 0:
        checkpoint = {'meta': {}}
        hook.before_save_checkpoint(runner, checkpoint)  # rank 0 only, as Runner does
        torch.save(checkpoint, path)
    expected = torch.rand(5)  # what the uninterrupted run draws next
    torch.rand(11)  # the run goes on, then dies
    dist.barrier()

    resumed = RNGStateHook()
    resumed.after_load_checkpoint(runner, torch.load(path, weights_only=False))
    resumed.before_train_iter(runner, batch_idx=0)
    got = torch.rand(5)
    torch.save(dict(expected=expected, got=got), os.path.join(work_dir, f'rank{rank}.pth'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
