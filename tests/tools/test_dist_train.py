"""tools/dist_train.sh and tools/dist_test.sh run 2 processes on CPU (gloo), as on GPUs."""

import os
import os.path as osp

import pytest

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import free_port, run_tool, synth_train_options

pytestmark = pytest.mark.slow  # a two-process CPU training

CONFIG = 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'


def test_dist_train_two_processes_on_cpu(tmp_path):
    data = tmp_path / 'data'
    make_synthetic_coco(str(data), 8, 4, img_size=96, verbose=False)
    env = dict(os.environ, PORT=str(free_port()), OMP_NUM_THREADS='1')
    run = run_tool(
        ['bash', 'tools/dist_train.sh', CONFIG, '2', '--work-dir', str(tmp_path / 'wd')],
        synth_train_options(data, 3, checkpoint_interval=3),
        env=env,
    )
    out = run.stdout + run.stderr
    assert run.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out and 'Iter(train) [3/3]' in out
    assert 'coco/bbox_mAP' in out  # distributed evaluation gathered both ranks' results
    assert osp.isfile(tmp_path / 'wd' / 'iter_3.pth')

    # the checkpoint it wrote, evaluated by 2 processes; every rank exits with status 0
    env['PORT'] = str(free_port())
    ckpt = str(tmp_path / 'wd' / 'iter_3.pth')
    test = run_tool(
        ['bash', 'tools/dist_test.sh', CONFIG, ckpt, '2', '--work-dir', str(tmp_path / 'test')],
        synth_train_options(data, 3),
        env=env,
    )
    out = test.stdout + test.stderr
    assert test.returncode == 0, out[-4000:]
    assert 'Distributed training: True' in out and 'coco/bbox_mAP' in out
