"""Tests for exporting the student of a distiller checkpoint (and its CLI)."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config

from mmdet_detrdistill.utils.export import export_student, to_plain
from mmdet_detrdistill.utils.export_config import parse_config_text

REPO = Path(__file__).resolve().parents[2]

TRAIN_CFG = {
    'custom_imports': {'imports': ['mmdet_detrdistill'], 'allow_failed_imports': False},
    'model': {
        'type': 'DETRDistiller',
        'student': {
            'type': 'DeformableDETR',
            'num_queries': 100,
            'backbone': {'type': 'ResNet', 'depth': 18, 'out_indices': (1, 2, 3)},
        },
        'teacher_cfg': {'type': 'DeformableDETR', 'num_queries': 300},
        'teacher_ckpt': 'teacher.pth',
    },
    'load_from': 'teacher.pth',
    'work_dir': 'work_dirs/distill',
    'train_cfg': {'type': 'EpochBasedTrainLoop', 'max_epochs': 12, 'val_interval': 1},
    'optim_wrapper': {'optimizer': {'type': 'AdamW', 'lr': 2e-4, 'weight_decay': -1e-4}},
}


def _distiller_ckpt(path: Path, with_student: bool = True, cfg_text=None) -> dict:
    gen = torch.Generator().manual_seed(0)
    state = {
        'teacher.backbone.conv1.weight': torch.randn(4, 3, 3, 3, generator=gen),
        'data_preprocessor.mean': torch.zeros(3),
        'ema_teacher.backbone.conv1.weight': torch.randn(4, 3, 3, 3, generator=gen),
    }
    if with_student:
        state['student.backbone.conv1.weight'] = torch.randn(4, 3, 3, 3, generator=gen)
        state['student.bbox_head.fc.weight'] = torch.randn(3, 5, generator=gen).t()
    meta = {
        'epoch': 1,
        'iter': np.int64(30),
        'seed': 0,
        'cfg': Config(TRAIN_CFG).pretty_text if cfg_text is None else cfg_text,
        'dataset_meta': {
            'classes': ('cat', 'dog'),
            'palette': np.array([[220, 20, 60], [0, 0, 142]]),
            'score': np.float32(0.5),
        },
    }
    torch.save({'meta': meta, 'state_dict': state, 'optimizer': {'state': {}}}, path)
    return state


def _assert_plain(value) -> None:
    if isinstance(value, dict):
        for key, item in value.items():
            _assert_plain(key)
            _assert_plain(item)
    elif isinstance(value, (list, tuple)):
        assert type(value) in (list, tuple)
        for item in value:
            _assert_plain(item)
    else:
        assert value is None or type(value) in (str, int, float, bool), type(value)


def test_export_keeps_only_student(tmp_path):
    src = tmp_path / 'distill.pth'
    state = _distiller_ckpt(src)
    out, config_path = export_student(str(src), str(tmp_path / 'student.pth'))
    exported = torch.load(out, weights_only=True)
    assert set(exported) == {'meta', 'state_dict'}
    assert set(exported['state_dict']) == {'backbone.conv1.weight', 'bbox_head.fc.weight'}
    for key, value in exported['state_dict'].items():
        assert value.is_contiguous()
        assert torch.equal(value, state[f'student.{key}'])
    meta = exported['meta']
    _assert_plain(meta)
    assert meta['dataset_meta']['classes'] == ('cat', 'dog')
    assert meta['dataset_meta']['palette'] == [[220, 20, 60], [0, 0, 142]]
    assert meta['iter'] == 30 and meta['exported_from'] == str(src)
    assert 'cfg' not in meta
    assert config_path == str(tmp_path / 'student_config.py')


def test_exported_file_loads_with_vanilla_torch(tmp_path):
    src = tmp_path / 'distill.pth'
    _distiller_ckpt(src)
    out, _ = export_student(str(src), str(tmp_path / 'student.pth'))
    script = (
        'import sys, torch\n'
        f'ckpt = torch.load({out!r}, weights_only=True)\n'
        'from mmengine.runner.checkpoint import _load_checkpoint\n'
        f'ckpt2 = _load_checkpoint({out!r}, map_location="cpu")\n'
        "assert 'mmdet_detrdistill' not in sys.modules, 'package was imported'\n"
        "print(sorted(ckpt['state_dict']), ckpt2['meta']['dataset_meta']['classes'])\n"
    )
    result = subprocess.run(
        [sys.executable, '-c', script], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert result.returncode == 0, result.stderr
    assert "['backbone.conv1.weight', 'bbox_head.fc.weight'] ('cat', 'dog')" in result.stdout


def test_export_without_student_keys(tmp_path):
    src = tmp_path / 'teacher_only.pth'
    _distiller_ckpt(src, with_student=False)
    out = tmp_path / 'student.pth'
    with pytest.raises(ValueError, match="no student weights.*'student.'") as info:
        export_student(str(src), str(out))
    assert str(src) in str(info.value)
    assert not out.exists()
    assert os.listdir(tmp_path) == ['teacher_only.pth']


def test_export_refuses_to_overwrite_input(tmp_path):
    src = tmp_path / 'distill.pth'
    _distiller_ckpt(src)
    with pytest.raises(ValueError, match='is the input'):
        export_student(str(src), str(src))


def test_student_config(tmp_path):
    src = tmp_path / 'distill.pth'
    _distiller_ckpt(src)
    _, config_path = export_student(str(src), str(tmp_path / 'student.pth'))
    cfg = Config.fromfile(config_path)
    assert cfg.model.type == 'DeformableDETR'
    assert cfg.model.backbone.depth == 18 and cfg.model.backbone.out_indices == (1, 2, 3)
    assert 'custom_imports' not in cfg
    assert cfg.load_from is None and 'work_dir' not in cfg
    assert cfg.optim_wrapper.optimizer.weight_decay == -1e-4
    assert cfg.train_cfg.max_epochs == 12


def test_config_with_code_is_not_executed(tmp_path):
    marker = tmp_path / 'executed.txt'
    cfg_text = f"import os\nos.system('touch {marker}')\nmodel = dict(student=dict(type='X'))\n"
    src = tmp_path / 'distill.pth'
    _distiller_ckpt(src, cfg_text=cfg_text)
    with pytest.warns(UserWarning, match='no student config'):
        out, config_path = export_student(str(src), str(tmp_path / 'student.pth'))
    assert config_path is None and os.path.isfile(out)
    assert not marker.exists()
    with pytest.raises(ValueError):
        parse_config_text(f"model = dict(type=open('{marker}', 'w'))\n")
    assert not marker.exists()


def test_parse_config_text_reads_pretty_text_of_quoted_keys_and_nothing_more():
    cfg = {'model': {'custom_keys': {'backbone.layer1': {'lr_mult': 0.1}}, 'l': [{'a-b': 1}]}}
    assert parse_config_text(Config(cfg).pretty_text) == cfg  # written as dict({...})
    for text in ("x = dict({'a': 1}, b=2)\n", 'x = dict(y)\n', "x = dict([('a', 1)])\n"):
        with pytest.raises(ValueError, match='non-literal'):
            parse_config_text(text)


def test_to_plain():
    value = {'a': (np.int64(1), np.float32(0.5)), 'b': [np.array([1, 2])], 1: torch.tensor(2)}
    assert to_plain(value) == {'a': (1, 0.5), 'b': [[1, 2]], 1: 2}
    _assert_plain(to_plain(value))


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'model_converters' / 'export_student.py'), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_cli(tmp_path):
    good, bad = tmp_path / 'distill.pth', tmp_path / 'plain.pth'
    _distiller_ckpt(good)
    torch.save({'state_dict': {'backbone.w': torch.zeros(1)}}, bad)

    ok = _cli(str(good), str(tmp_path / 'student.pth'))
    assert ok.returncode == 0, ok.stderr
    assert '2 student tensors' in ok.stdout and 'student_config.py' in ok.stdout

    fail = _cli(str(bad), str(tmp_path / 'out.pth'))
    assert fail.returncode == 1
    assert 'Traceback' not in fail.stderr
    assert fail.stderr.startswith('error: ') and 'no student weights' in fail.stderr
    assert len(fail.stderr.strip().splitlines()) == 1
    assert not (tmp_path / 'out.pth').exists()
