"""tools/train.py trains the tiny D3ETR config through mmengine's Runner, and resumes."""

import os.path as osp
import subprocess
import sys

import pytest
import torch

from mmdet_detrdistill.datasets import make_synthetic_coco

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
CONFIG = osp.join(ROOT, 'configs', 'd3etr', 'd3etr_tiny-t_tiny-s_1xb8-synth.py')


def _train(work_dir, data_root, iters, *extra):
    root = f'{data_root}/'
    opts = [
        'model.allow_untrained_teacher=True',
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        'default_hooks.checkpoint.interval=2',
        'default_hooks.logger.interval=1',
        'train_dataloader.batch_size=2',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/val.json',
    ]
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'),
        CONFIG,
        '--work-dir',
        str(work_dir),
        *extra,
        '--cfg-options',
        *opts,
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    make_synthetic_coco(str(root), 8, 4, img_size=96, verbose=False)
    return root


def test_train_then_resume(data_root, tmp_path):
    log = _train(tmp_path, data_root, 4)
    assert 'd3etr.adaptive.d1.loss_cross_attn' in log and 'coco/bbox_mAP' in log
    ckpt = torch.load(tmp_path / 'iter_4.pth', map_location='cpu')  # safe globals registered
    keys = list(ckpt['state_dict'])
    assert keys and all(k.startswith('student.') for k in keys)  # the teacher is not saved
    log = _train(tmp_path, data_root, 6, '--resume')
    assert 'resumed checkpoint' in log.lower() or 'resumed' in log.lower()
    assert 'Iter(train) [5/6]' in log and 'Iter(train) [1/6]' not in log
    assert osp.isfile(tmp_path / 'iter_6.pth')


def test_missing_teacher_checkpoint_fails_before_training(data_root, tmp_path):
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'),
        CONFIG,
        '--work-dir',
        str(tmp_path),
        '--cfg-options',
        'model.teacher_ckpt=/nowhere/teacher.pth',
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode != 0
    assert '/nowhere/teacher.pth' in run.stderr and 'Iter(train)' not in run.stdout + run.stderr


def test_bad_config_path_is_a_clear_error(tmp_path):
    cmd = [sys.executable, osp.join(ROOT, 'tools', 'train.py'), str(tmp_path / 'nope.py')]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode != 0 and 'config file not found' in run.stderr
