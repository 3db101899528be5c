"""tools/train.py trains the tiny D3ETR config through mmengine's Runner, and resumes."""

import os.path as osp

import pytest
import torch

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import run_tool, synth_train_options

pytestmark = pytest.mark.slow  # trains and resumes through tools/train.py

CONFIG = 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    make_synthetic_coco(str(root), 8, 4, img_size=96, verbose=False)
    return root


def _train(work_dir, data_root, iters, *extra):
    run = run_tool(
        ['tools/train.py', CONFIG, '--work-dir', str(work_dir), *extra],
        synth_train_options(data_root, iters),
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    return run.stdout + run.stderr


def test_train_then_resume(data_root, tmp_path):
    log = _train(tmp_path, data_root, 4)
    assert 'd3etr.adaptive.d1.loss_cross_attn' in log and 'coco/bbox_mAP' in log
    ckpt = torch.load(tmp_path / 'iter_4.pth', map_location='cpu')  # safe globals registered
    keys = list(ckpt['state_dict'])
    assert keys and all(k.startswith('student.') for k in keys)  # the teacher is not saved
    log = _train(tmp_path, data_root, 6, '--resume')
    assert 'resumed' in log.lower()
    assert 'Iter(train) [5/6]' in log and 'Iter(train) [1/6]' not in log
    assert osp.isfile(tmp_path / 'iter_6.pth')


def test_missing_teacher_checkpoint_fails_before_training(data_root, tmp_path):
    # the teacher is loaded when training starts (init_weights), after the datasets are built
    options = synth_train_options(data_root, 2, external_teacher=False)
    run = run_tool(
        ['tools/train.py', CONFIG, '--work-dir', str(tmp_path)],
        [*options, 'model.teacher_ckpt=/nowhere/teacher.pth'],
        timeout=300,
    )
    assert run.returncode != 0
    assert '/nowhere/teacher.pth' in run.stderr and 'Iter(train)' not in run.stdout + run.stderr


def test_bad_config_path_is_a_clear_error(tmp_path):
    run = run_tool(['tools/train.py', str(tmp_path / 'nope.py')], timeout=120)
    assert run.returncode != 0 and 'config file not found' in run.stderr
