"""Train N, stop, resume, train M more: the losses equal an uninterrupted N+M run."""

import glob
import json
import os.path as osp

import pytest

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import run_tool, synth_train_options

pytestmark = pytest.mark.slow  # trains, kills and resumes tiny runs per method

CONFIGS = {
    'd3etr-conditional': 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py',
    'd3etr-deformable': 'configs/d3etr/d3etr_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py',
    'detrdistill-deformable': (
        'configs/detrdistill/detrdistill_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py'
    ),
    # the EMA teacher must come back from the checkpoint, step count included
    'oddetr-conditional': 'configs/oddetr/oddetr_tiny-s_1xb8-synth.py',
    # DINO's denoising queries draw their noise from the torch RNG: it must come back too
    'd3etr-dino': 'configs/d3etr/d3etr_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
}


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    make_synthetic_coco(str(root), 8, 2, img_size=96, verbose=False)
    return root


def _train(config, work_dir, data_root, iters, *extra):
    external_teacher = 'oddetr' not in config  # OD-DETR's teacher is the student's EMA
    options = synth_train_options(data_root, iters, external_teacher=external_teacher)
    options += ['train_cfg.val_interval=100']
    run = run_tool(['tools/train.py', config, '--work-dir', str(work_dir), *extra], options)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]


def _losses(work_dir):
    """Every logged training loss, by iteration (from MMEngine's scalars.json)."""
    losses = {}
    for path in glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for line in f:
                rec = json.loads(line)
                if 'loss' in rec:
                    losses[rec['iter']] = rec['loss']
    return losses


@pytest.mark.parametrize('name', sorted(CONFIGS))
def test_resumed_losses_equal_uninterrupted(name, data_root, tmp_path):
    config = CONFIGS[name]
    _train(config, tmp_path / 'straight', data_root, 4)
    _train(config, tmp_path / 'resumed', data_root, 2)
    _train(config, tmp_path / 'resumed', data_root, 4, '--resume')
    straight, resumed = _losses(tmp_path / 'straight'), _losses(tmp_path / 'resumed')
    assert sorted(straight) == sorted(resumed) == [1, 2, 3, 4]
    assert resumed == straight  # exact: same data, same dropout masks, same optimizer state
