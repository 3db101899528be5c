"""AtomicCheckpointHook: a save that dies midway loses nothing; resume finds the newest
complete checkpoint of the run; otherwise the same files as mmengine's CheckpointHook.
(Which run resume continues in a reused work dir: test_resume_this_run.py.)"""

import os
import uuid

import pytest
import torch
from mmengine.hooks import Hook
from mmengine.model import BaseModel
from mmengine.runner import Runner
from torch import nn
from torch.utils.data import Dataset


class ToyModel(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        out = self.linear(torch.stack(inputs))
        if mode == 'loss':
            return {'loss': ((out - torch.stack(data_samples)) ** 2).mean()}
        return out


class ToyDataset(Dataset):
    def __len__(self) -> int:
        return 8

    def __getitem__(self, idx):
        x = torch.tensor([idx / 8.0, 1.0])
        return {'inputs': x, 'data_samples': x.sum(0, keepdim=True)}


class Killed(Exception):
    pass


class CrashAtSave(Hook):
    """Dies while checkpoint ``step`` is being saved (as a kill would)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def before_save_checkpoint(self, runner, checkpoint) -> None:
        if checkpoint['meta']['iter'] == self.step:
            raise Killed(f'killed while saving iter_{self.step}.pth')


class StartRecorder(Hook):
    def before_train(self, runner) -> None:
        self.start = runner.iter


def _run(
    work_dir, max_iters, hook_type='AtomicCheckpointHook', extra_hooks=(), resume=True, **ckpt_cfg
):
    runner = Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'toy_{uuid.uuid4().hex}',
        train_dataloader=dict(
            dataset=ToyDataset(),
            sampler=dict(type='DefaultSampler', shuffle=False),
            batch_size=2,
            num_workers=0,
        ),
        train_cfg=dict(by_epoch=False, max_iters=max_iters),
        optim_wrapper=dict(optimizer=dict(type='SGD', lr=0.1)),
        default_hooks=dict(
            checkpoint=dict(type=hook_type, interval=1, by_epoch=False, **ckpt_cfg),
            logger=dict(type='LoggerHook', interval=1),
        ),
        custom_hooks=list(extra_hooks),
        resume=resume,
        default_scope='mmdet',  # where our hooks are registered
    )
    runner.train()
    return runner


def _pointer(work_dir) -> str:
    return os.path.basename((work_dir / 'last_checkpoint').read_text().strip())


@pytest.mark.parametrize('hook_type', ['CheckpointHook', 'AtomicCheckpointHook'])
def test_save_that_dies_keeps_previous_checkpoint(tmp_path, hook_type):
    with pytest.raises(Killed):
        _run(tmp_path, 4, hook_type, [CrashAtSave(3)], max_keep_ckpts=1)
    if hook_type == 'CheckpointHook':  # control: mmengine removes iter_2 before saving iter_3
        assert not (tmp_path / 'iter_2.pth').exists() and _pointer(tmp_path) == 'iter_2.pth'
        return
    names = sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth') or n.endswith('.tmp'))
    assert names == ['iter_2.pth'] and _pointer(tmp_path) == 'iter_2.pth'
    recorder = StartRecorder()
    _run(tmp_path, 4, extra_hooks=[recorder], max_keep_ckpts=1)
    assert recorder.start == 2
    assert sorted(n for n in os.listdir(tmp_path) if n.endswith('.pth')) == ['iter_4.pth']


@pytest.mark.parametrize('pointer', ['missing-file', 'older', 'no-pointer', 'truncated'])
def test_resume_takes_newest_complete_checkpoint(tmp_path, pointer):
    _run(tmp_path, 3)  # iter_1, iter_2, iter_3 (keep all)
    data = (tmp_path / 'iter_3.pth').read_bytes()
    (tmp_path / 'iter_3.pth').write_bytes(data[: len(data) // 2])  # killed mid-write
    (tmp_path / '.iter_4.pth.tmp').write_bytes(data[:100])  # killed before the rename
    (tmp_path / '.last_checkpoint.tmp').write_text('x')
    (tmp_path / '.notes.tmp').write_text('not ours')
    last = tmp_path / 'last_checkpoint'
    if pointer == 'no-pointer':
        last.unlink()
    else:
        name = {'missing-file': 'iter_9.pth', 'older': 'iter_1.pth', 'truncated': 'iter_3.pth'}
        last.write_text(str(tmp_path / name[pointer]))
    recorder = StartRecorder()
    _run(tmp_path, 4, extra_hooks=[recorder])
    assert recorder.start == 2  # iter_2.pth: the newest complete checkpoint
    hidden = sorted(n for n in os.listdir(tmp_path) if n.startswith('.'))
    assert hidden == ['.notes.tmp']  # leftovers of the killed save are gone, nothing else
    assert _pointer(tmp_path) == 'iter_4.pth'


def test_same_checkpoints_as_mmengine(tmp_path):
    """Away from kills the hook is a drop-in: same files, same bookkeeping."""
    runs = {}
    for hook_type in ('CheckpointHook', 'AtomicCheckpointHook'):
        work_dir = tmp_path / hook_type
        _run(work_dir, 5, hook_type, max_keep_ckpts=2)
        ckpt = torch.load(work_dir / 'iter_5.pth', weights_only=False)
        runs[hook_type] = (
            sorted(n for n in os.listdir(work_dir) if n.endswith('.pth') or n.startswith('.')),
            _pointer(work_dir),
            ckpt['message_hub']['runtime_info']['keep_ckpt_ids'],
            os.path.basename(ckpt['message_hub']['runtime_info']['last_ckpt']),
        )
    assert runs['AtomicCheckpointHook'] == runs['CheckpointHook']
    assert runs['CheckpointHook'][0] == ['iter_4.pth', 'iter_5.pth']
