"""Tests for safe checkpoint loading (``mmdet_detrdistill.utils.checkpoint``)."""

import builtins
import os
import pickle
import re
import subprocess
import sys
import uuid

import numpy as np
import pytest
import torch
from mmengine.evaluator import BaseMetric
from mmengine.hooks import Hook
from mmengine.logging import HistoryBuffer
from mmengine.model import BaseModel
from mmengine.runner import Runner
from mmengine.runner.checkpoint import _load_checkpoint
from torch import nn
from torch.utils.data import Dataset

from mmdet_detrdistill.engine import DropExecutableConfigHook
from mmdet_detrdistill.utils.checkpoint import (
    CheckpointMismatchError,
    UnsafeCheckpointError,
    drop_executable_config,
    extract_state_dict,
    load_checkpoint_file,
    load_weights_strictly,
    register_mmengine_safe_globals,
    save_checkpoint_atomically,
)


class _OpenPayload:
    """Unpickling this creates ``target`` (a stand-in for arbitrary code execution)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (builtins.open, (self.target, 'w'))


class _SystemPayload(_OpenPayload):
    def __reduce__(self):
        return (os.system, (f'touch {self.target}',))


@pytest.mark.parametrize(
    'payload_cls,writer',
    [
        (_OpenPayload, 'torch'),
        (_OpenPayload, 'pickle'),  # legacy (non-zip) file, protocol 5 uses STACK_GLOBAL
        (_SystemPayload, 'torch'),
    ],
)
def test_malicious_pickle_is_refused(tmp_path, payload_cls, writer):
    target = tmp_path / 'pwned.txt'
    path = tmp_path / 'evil.pth'
    obj = {'state_dict': {'w': torch.zeros(2)}, 'meta': payload_cls(str(target))}
    if writer == 'torch':
        torch.save(obj, path)
    else:
        with open(path, 'wb') as f:
            pickle.dump(obj, f, protocol=5)

    with pytest.raises(UnsafeCheckpointError) as info:
        load_checkpoint_file(str(path))
    msg = str(info.value)
    expected = 'open' if payload_cls is _OpenPayload else 'system'
    assert str(path) in msg and expected in msg and 'NOT unpickled' in msg
    assert not target.exists()

    # What Runner.resume / load_from use must refuse it too.
    with pytest.raises(pickle.UnpicklingError):
        _load_checkpoint(str(path), map_location='cpu')
    assert not target.exists()


class _GetattrPayload:
    """Abuses the ``builtins.getattr`` name that HistoryBuffer pickles need."""

    def __reduce__(self):
        return (getattr, (HistoryBuffer, '__init__'))


@pytest.mark.parametrize(
    'payload,offender',
    [
        (_GetattrPayload(), "getattr(<class 'mmengine.logging.history_buffer.HistoryBuffer'>"),
        (np.array(['a', 1], dtype=object), 'ObjectDType'),
    ],
)
def test_only_needed_types_are_allowed(tmp_path, payload, offender):
    register_mmengine_safe_globals()
    path = tmp_path / 'ckpt.pth'
    torch.save({'meta': {'x': payload}, 'state_dict': {}}, path)
    with pytest.raises(UnsafeCheckpointError, match=re.escape(offender)):
        load_checkpoint_file(str(path))


class _Crash:
    """Fails halfway through ``torch.save`` (after the state dict was written)."""

    def __reduce__(self):
        raise RuntimeError('crash while saving')


class ToyModel(BaseModel):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(2, 1)

    def forward(self, inputs, data_samples=None, mode='tensor'):
        x = torch.stack(inputs)
        out = self.linear(x)
        if mode == 'loss':
            return {'loss': ((out - torch.stack(data_samples)) ** 2).mean()}
        if mode == 'predict':
            return [o for o in out]
        return out


class ToyDataset(Dataset):
    metainfo = {'classes': ('cat', 'dog'), 'palette': [(220, 20, 60), (0, 0, 142)]}

    def __init__(self) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.rand(8, 2, generator=gen)
        self.y = self.x.sum(1, keepdim=True)

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, idx):
        return {'inputs': self.x[idx], 'data_samples': self.y[idx]}


class ToyMetric(BaseMetric):
    """Returns numpy scalars, as many metrics do (they end up in the message hub)."""

    def process(self, data_batch, data_samples) -> None:
        self.results.extend(float(s.sum()) for s in data_samples)

    def compute_metrics(self, results):
        return {'score': np.float64(np.mean(results)), 'count': np.int64(len(results))}


class IterRecorder(Hook):
    """Records the iteration training starts at, each trained iteration and the weights."""

    def __init__(self) -> None:
        self.events = []
        self.start_weights = {}
        self.adam_steps = []
        self.scheduler_step = None

    def before_train(self, runner) -> None:
        self.events.append(('start', runner.iter))
        self.start_weights = {k: v.clone() for k, v in runner.model.state_dict().items()}
        optim_state = runner.optim_wrapper.optimizer.state_dict()['state']
        self.adam_steps = sorted(float(s['step']) for s in optim_state.values())
        self.scheduler_step = runner.param_schedulers[0]._global_step

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.events.append(runner.iter)


def _make_runner(work_dir, max_iters, **kwargs) -> Runner:
    loader = {
        'dataset': ToyDataset(),
        'sampler': {'type': 'DefaultSampler', 'shuffle': False},
        'batch_size': 2,
        'num_workers': 0,
    }
    return Runner(
        model=ToyModel(),
        work_dir=str(work_dir),
        experiment_name=f'toy_{uuid.uuid4().hex}',
        train_dataloader=loader,
        train_cfg={'by_epoch': False, 'max_iters': max_iters, 'val_interval': 3},
        val_dataloader=loader,
        val_cfg={},
        val_evaluator={'type': ToyMetric},
        optim_wrapper={'optimizer': {'type': 'AdamW', 'lr': 0.01, 'weight_decay': 1e-4}},
        param_scheduler={'type': 'MultiStepLR', 'milestones': [2], 'by_epoch': False},
        default_hooks={
            'checkpoint': {
                'type': 'CheckpointHook',
                'interval': 3,
                'by_epoch': False,
                'save_best': 'score',
                'rule': 'greater',
            },
            'logger': {'type': 'LoggerHook', 'interval': 1},
        },
        randomness={'seed': 0},
        **kwargs,
    )


@pytest.fixture(scope='module')
def runner_ckpt(tmp_path_factory):
    """A real Runner checkpoint after 3 iterations, and the model weights at that point."""
    work_dir = tmp_path_factory.mktemp('toy_run')
    runner = _make_runner(work_dir, max_iters=3)
    runner.train()
    path = work_dir / 'iter_3.pth'
    assert path.is_file()
    weights = {k: v.clone() for k, v in runner.model.state_dict().items()}
    return str(path), weights


def test_runner_checkpoint_needs_and_gets_safe_globals(runner_ckpt):
    path, _ = runner_ckpt
    script = (
        'import pickle, sys, torch\n'
        'try:\n'
        f'    torch.load({path!r}, weights_only=True)\n'
        "    print('LOADED_WITHOUT_ALLOW_LIST')\n"
        'except pickle.UnpicklingError:\n'
        "    print('REFUSED_WITHOUT_ALLOW_LIST')\n"
        'from mmdet_detrdistill.utils.checkpoint import register_mmengine_safe_globals\n'
        'register_mmengine_safe_globals()\n'
        f'print(torch.serialization.get_unsafe_globals_in_checkpoint({path!r}))\n'
        f'print(sorted(torch.load({path!r}, weights_only=True)))\n'
    )
    result = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    assert lines[0] == 'REFUSED_WITHOUT_ALLOW_LIST'  # the allow-list is really needed
    assert lines[1] == '[]'  # ... and complete for everything the Runner wrote
    assert 'message_hub' in lines[2] and 'param_schedulers' in lines[2]


def test_runner_checkpoint_loads_and_resumes(runner_ckpt, tmp_path):
    path, weights = runner_ckpt
    register_mmengine_safe_globals()
    register_mmengine_safe_globals()  # idempotent
    ckpt = _load_checkpoint(path, map_location='cpu')
    assert ckpt['meta']['iter'] == 3
    hub = ckpt['message_hub']
    assert type(hub['log_scalars']['train/loss']).__name__ == 'HistoryBuffer'
    assert isinstance(hub['runtime_info']['best_score'], np.floating)
    assert load_checkpoint_file(path)['meta']['dataset_meta']['classes'] == ('cat', 'dog')

    recorder = IterRecorder()
    runner = _make_runner(tmp_path, max_iters=5, resume=True, load_from=path)
    runner.register_hook(recorder)
    runner.train()
    assert recorder.events == [('start', 3), 3, 4]  # iterations 3 and 4 (0-based) are trained
    for key, value in weights.items():
        torch.testing.assert_close(recorder.start_weights[key], value)
    assert recorder.adam_steps == [3.0, 3.0]  # optimizer state resumed (weight and bias)
    assert recorder.scheduler_step == 3


def _evil_resume(runner_ckpt, tmp_path, name, with_hook):
    path, _ = runner_ckpt
    marker = tmp_path / f'{name}.txt'
    ckpt = load_checkpoint_file(path)
    ckpt['meta']['config'] = f"x = __import__('os').system('touch {marker}')\n"
    evil = tmp_path / f'{name}.pth'
    torch.save(ckpt, evil)
    runner = _make_runner(tmp_path / name, max_iters=4, resume=True, load_from=str(evil))
    if with_hook:
        runner.register_hook(DropExecutableConfigHook(), priority='VERY_HIGH')
    runner.train()
    return runner, marker


def test_resume_does_not_exec_config_text(runner_ckpt, tmp_path):
    """MMEngine's resume ``exec``s ``meta['config']``; our hook drops it first."""
    runner, marker = _evil_resume(runner_ckpt, tmp_path, 'guarded', with_hook=True)
    assert runner.iter == 4
    assert not marker.exists()
    # control: without the hook MMEngine does execute it (so this test can fail)
    _, marker = _evil_resume(runner_ckpt, tmp_path, 'unguarded', with_hook=False)
    assert marker.exists()
    assert drop_executable_config({'meta': {'config': 'x = 1'}})
    assert not drop_executable_config({'meta': {'cfg': 'x = 1'}})


def test_missing_file(tmp_path):
    path = str(tmp_path / 'nope.pth')
    with pytest.raises(FileNotFoundError, match='nope.pth'):
        load_checkpoint_file(path)


def _assert_corrupt(path) -> None:
    with pytest.raises(ValueError) as info:
        load_checkpoint_file(str(path))
    assert not isinstance(info.value, UnsafeCheckpointError)
    assert str(path) in str(info.value)


def test_corrupt_files(tmp_path):
    rng = np.random.default_rng(0)
    random_file = tmp_path / 'random.pth'
    random_file.write_bytes(rng.integers(0, 256, 4096, dtype=np.uint8).tobytes())
    _assert_corrupt(random_file)

    good = tmp_path / 'good.pth'
    torch.save({'state_dict': {'w': torch.randn(64, 64)}}, good)
    truncated = tmp_path / 'truncated.pth'
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    _assert_corrupt(truncated)

    text = tmp_path / 'text.pth'
    text.write_text('model = dict(type="RetinaNet")\n')
    _assert_corrupt(text)

    not_dict = tmp_path / 'list.pth'
    torch.save([torch.zeros(1)], not_dict)
    with pytest.raises(ValueError, match='not a dict'):
        load_checkpoint_file(str(not_dict))


def test_extract_state_dict_prefixes():
    t = torch.zeros(1)
    assert set(extract_state_dict({'state_dict': {'module.a.w': t}}, 'f')) == {'a.w'}
    student_only = {'state_dict': {'student.a.w': t, 'student.b': t}}
    assert set(extract_state_dict(student_only, 'f')) == {'a.w', 'b'}
    mixed = {'model': {'student.a.w': t, 'teacher.a.w': t}}
    assert set(extract_state_dict(mixed, 'f')) == {'student.a.w', 'teacher.a.w'}
    assert set(extract_state_dict({'a': t, 'meta': 1}, 'f')) == {'a'}
    with pytest.raises(ValueError, match="'my.pth' holds no tensors"):
        extract_state_dict({'state_dict': {}, 'meta': {}}, 'my.pth')


def _toy_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1))


def _other_weights() -> dict:
    torch.manual_seed(1)
    return dict(nn.Sequential(nn.Linear(3, 2), nn.Linear(2, 1)).state_dict())


@pytest.mark.parametrize(
    'edit,expected',
    [
        (lambda sd: sd.pop('1.bias'), ['missing keys', '1.bias']),
        (lambda sd: sd.update({'extra.weight': torch.zeros(1)}), ['unexpected', 'extra.weight']),
        (lambda sd: sd.update({'0.weight': torch.zeros(5, 3)}), ['shape', '0.weight', '(5, 3)']),
    ],
)
def test_strict_loading_rejects_without_partial_load(tmp_path, edit, expected):
    model = _toy_net()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    state = _other_weights()
    edit(state)
    path = tmp_path / 'teacher.pth'
    torch.save({'state_dict': state}, path)
    with pytest.raises(CheckpointMismatchError) as info:
        load_weights_strictly(model, str(path), role='teacher')
    msg = str(info.value)
    assert all(part in msg for part in expected + ['teacher', str(path), 'config matches'])
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key]), f'{key} was modified'


def test_strict_loading_success_with_prefixes(tmp_path):
    model = _toy_net()
    state = _other_weights()
    path = tmp_path / 'student.pth'
    torch.save({'state_dict': {f'module.student.{k}': v for k, v in state.items()}}, path)
    load_weights_strictly(model, str(path), role='student')
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])


def test_save_checkpoint_atomically(tmp_path):
    path = tmp_path / 'sub' / 'ckpt.pth'
    save_checkpoint_atomically({'state_dict': {'w': torch.ones(2)}}, str(path))
    assert torch.equal(load_checkpoint_file(str(path))['state_dict']['w'], torch.ones(2))
    with pytest.raises(RuntimeError, match='crash while saving'):
        save_checkpoint_atomically({'state_dict': {'w': torch.zeros(2)}, 'x': _Crash()}, str(path))
    assert torch.equal(load_checkpoint_file(str(path))['state_dict']['w'], torch.ones(2))
    assert sorted(os.listdir(path.parent)) == ['ckpt.pth']  # no temp file left behind
