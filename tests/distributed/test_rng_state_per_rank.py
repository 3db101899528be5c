"""RNGStateHook saves every rank's RNG state and gives each rank its own back (2 gloo ranks)."""

import logging
import os
import subprocess
import sys
from types import SimpleNamespace

import pytest
import torch

from mmdet_detrdistill.engine import RNGStateHook
from mmdet_detrdistill.testing import free_port

pytestmark = pytest.mark.slow  # spawns two-process DDP groups

WORKER = os.path.join(os.path.dirname(__file__), 'rng_state_worker.py')


def _run_two_ranks(work_dir):
    env = dict(os.environ, OMP_NUM_THREADS='1', MASTER_ADDR='127.0.0.1')
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--nproc_per_node', '2']
    cmd += ['--master_port', str(free_port()), WORKER, str(work_dir)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return [torch.load(work_dir / f'rank{rank}.pth') for rank in (0, 1)]


def test_each_rank_resumes_its_own_rng_state(tmp_path):
    ranks = _run_two_ranks(tmp_path)
    for result in ranks:
        torch.testing.assert_close(result['got'], result['expected'], rtol=0, atol=0)
    assert not torch.equal(ranks[0]['expected'], ranks[1]['expected'])  # distinct states

    # resumed by one process: a warning, and the run goes on from rank 0's state
    checkpoint = torch.load(tmp_path / 'ckpt.pth', weights_only=False)
    assert len(checkpoint['meta']['torch_rng_state']['ranks']) == 2
    warnings = []
    logger = logging.getLogger('rng_state_test')
    logger.warning = warnings.append
    runner = SimpleNamespace(iter=7, logger=logger)
    hook = RNGStateHook()
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train_iter(runner, batch_idx=0)
    torch.testing.assert_close(torch.rand(5), ranks[0]['expected'], rtol=0, atol=0)
    assert len(warnings) == 1 and '2 rank(s)' in warnings[0] and 'has 1' in warnings[0]
