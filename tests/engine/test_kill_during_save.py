"""A training run SIGKILLed at each moment of a save, and at a random one, resumes to the end
and ends with the weights of an uninterrupted run.

Each run is a forked copy of this process (no second interpreter start-up, no re-import)
running mmengine's Runner with this package's runtime hooks (configs/_base_/distill_runtime.py):
checkpoint every iteration, ``max_keep_ckpts=1``, ``resume=True``, a model with dropout (only an
exact resume, RNG state included, repeats the uninterrupted run).
"""

import os
import random
import signal
import time
import traceback
import uuid
import zipfile

import pytest
import torch
from mmengine.config import Config
from mmengine.fileio.backends import local_backend
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset

import mmdet_detrdistill.engine.atomic_checkpoint_hook as atomic
from mmdet_detrdistill.testing import REPO_ROOT

RUNTIME = os.path.join(REPO_ROOT, 'configs/_base_/distill_runtime.py')
MAX_ITERS = 12


class ToyModel(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Dropout(0.5), nn.Linear(16, 1))

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.net(torch.stack(inputs))
        if mode == 'loss':
            return {'loss': ((out - torch.stack(data_samples)) ** 2).mean()}
        return out


class ToyDataset(Dataset):
    def __len__(self) -> int:
        return 32  # 8 iterations an epoch

    def __getitem__(self, idx):
        x = torch.rand(4, generator=torch.Generator().manual_seed(idx))
        return {'inputs': x, 'data_samples': x.sum(0, keepdim=True)}


class Progress(Hook):
    """Appends ``START <iter>`` / ``END <iter>`` to a file."""

    def __init__(self, path: str) -> None:
        self.path = path

    def _note(self, text: str) -> None:
        with open(self.path, 'a') as f:
            f.write(text + '\n')

    def before_train(self, runner) -> None:
        self._note(f'START {runner.iter}')

    def after_train(self, runner) -> None:
        self._note(f'END {runner.iter}')


def build_runner(work_dir: str, progress: str) -> Runner:
    torch.manual_seed(0)  # the same initial weights in every process
    checkpoint = dict(type='AtomicCheckpointHook', interval=1, by_epoch=False, max_keep_ckpts=1)
    return Runner(
        model=ToyModel(),
        work_dir=work_dir,
        experiment_name=uuid.uuid4().hex,
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=True),
            batch_size=4,
            num_workers=0,
        ),
        train_cfg=dict(by_epoch=False, max_iters=MAX_ITERS),
        optim_wrapper=dict(optimizer=dict(type='AdamW', lr=0.01)),
        default_hooks=dict(checkpoint=checkpoint, logger=dict(type='LoggerHook', interval=1)),
        custom_hooks=[*Config.fromfile(RUNTIME).custom_hooks, Progress(progress)],
        randomness=dict(seed=0),
        resume=True,
        default_scope='mmdet',
    )


def _kill() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def _arm(step: int, phase: str) -> None:
    """In this (forked) process only, make one step of saving ``iter_{step}.pth`` end in a
    SIGKILL. write: half of the temporary file written; publish: renamed into place,
    ``last_checkpoint`` not yet rewritten; pointer: ``last_checkpoint`` rewritten, the
    previous checkpoint not yet removed."""
    name = f'iter_{step}.pth'
    if phase == 'write':
        put = local_backend.LocalBackend.put

        def half_put(self, obj, filepath):
            if os.path.basename(filepath) == atomic.temporary_name(name):
                with open(filepath, 'wb') as f:
                    f.write(obj[: len(obj) // 2])
                _kill()
            put(self, obj, filepath)

        local_backend.LocalBackend.put = half_put
    elif phase == 'publish':
        publish = atomic.publish

        def publish_then_kill(tmp_path, path):
            publish(tmp_path, path)
            if os.path.basename(path) == name:
                _kill()

        atomic.publish = publish_then_kill
    elif phase == 'pointer':
        write = atomic.write_text_atomically

        def write_then_kill(path, text):
            write(path, text)
            if os.path.basename(text) == name:
                _kill()

        atomic.write_text_atomically = write_then_kill


def _start(work_dir, *kill_at):
    """Fork a run; return its pid and progress file."""
    progress = work_dir / f'run{len(list(work_dir.glob("run*.txt")))}.txt'
    progress.touch()
    pid = os.fork()
    if pid == 0:  # the child never returns into pytest
        code = 1
        try:
            if kill_at:
                _arm(*kill_at)
            build_runner(str(work_dir), str(progress)).train()
            code = 0
        except BaseException:
            traceback.print_exc()
        finally:
            os._exit(code)
    return pid, progress


def _finish(pid, progress, timeout=120.0):
    """Wait for the run; return its exit code (-9: SIGKILL) and its START/END marks."""
    deadline = time.monotonic() + timeout
    while (done := os.waitpid(pid, os.WNOHANG))[0] == 0:
        if time.monotonic() > deadline:
            os.kill(pid, signal.SIGKILL)
        time.sleep(0.02)
    marks = dict(line.split() for line in progress.read_text().splitlines())
    return os.waitstatus_to_exitcode(done[1]), {k: int(v) for k, v in marks.items()}


def _complete(work_dir):
    """Iterations with a whole checkpoint file (a zip archive has its directory at the end)."""
    names = [n for n in os.listdir(work_dir) if n.startswith('iter_') and n.endswith('.pth')]
    return sorted(int(n[5:-4]) for n in names if zipfile.is_zipfile(work_dir / n))


def _weights(path):
    return torch.load(path, map_location='cpu', weights_only=False)['state_dict']


@pytest.mark.slow
def test_sigkill_at_any_moment_of_a_save_resumes_exactly(tmp_path):
    work_dir = tmp_path / 'killed'
    work_dir.mkdir()
    # (kill while saving this iteration, at this moment; where the run must have started)
    for step, phase, start in ((2, 'write', 0), (5, 'publish', 1), (8, 'pointer', 5)):
        assert _finish(*_start(work_dir, step, phase)) == (-signal.SIGKILL, {'START': start})
    # a kill at a random moment of the next run, which starts at an epoch boundary
    pid, progress = _start(work_dir)
    while not progress.read_text() and os.waitpid(pid, os.WNOHANG)[0] == 0:
        time.sleep(0.01)
    time.sleep(random.Random(0).uniform(0.0, 0.3))
    os.kill(pid, signal.SIGKILL)
    assert _finish(pid, progress)[1]['START'] == 8
    newest = _complete(work_dir)[-1]
    assert _finish(*_start(work_dir)) == (0, {'START': newest, 'END': MAX_ITERS})
    assert (work_dir / 'last_checkpoint').read_text().endswith(f'iter_{MAX_ITERS}.pth')
    assert not [n for n in os.listdir(work_dir) if n.endswith('.tmp')]

    straight = tmp_path / 'straight'
    straight.mkdir()
    build_runner(str(straight), str(straight / 'run0.txt')).train()
    final = f'iter_{MAX_ITERS}.pth'
    expected, got = _weights(straight / final), _weights(work_dir / final)
    for key, value in expected.items():
        torch.testing.assert_close(got[key], value, rtol=0, atol=0)
