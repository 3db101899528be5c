"""Run tools/train.py on generated data from tests: the shared command line."""

import os.path as osp
import socket
import subprocess
import sys
from typing import Dict, List, Optional, Sequence

REPO_ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


def free_port() -> int:
    """A free TCP port on localhost, for a test's distributed rendezvous."""
    with socket.socket() as s:
        s.bind(('127.0.0.1', 0))
        return s.getsockname()[1]


def synth_train_options(
    data_root: str, iters: int, checkpoint_interval: int = 2, external_teacher: bool = True
) -> List[str]:
    """``--cfg-options`` for a short run of an embedded-default config on ``data_root``
    with batch size 2 and, for a distiller with an ``external_teacher``, an untrained one."""
    root = f'{str(data_root).rstrip("/")}/'
    teacher = ['model.allow_untrained_teacher=True'] if external_teacher else []
    return teacher + [
        'randomness.seed=0',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'default_hooks.checkpoint.interval={checkpoint_interval}',
        'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=2',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/val.json',
        f'test_evaluator.ann_file={root}annotations/val.json',
    ]


def run_tool(
    args: Sequence[str],
    options: Sequence[str] = (),
    env: Optional[Dict[str, str]] = None,
    timeout: int = 600,
) -> subprocess.CompletedProcess:
    """Run ``args`` (e.g. ``['tools/train.py', CONFIG, '--work-dir', DIR]``) from the repo
    root, a ``.py`` first argument with this Python, with ``--cfg-options options``."""
    cmd = [sys.executable, *args] if str(args[0]).endswith('.py') else list(args)
    if options:
        cmd += ['--cfg-options', *options]
    return subprocess.run(
        cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )
