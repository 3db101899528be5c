"""The OD-DETR configs evaluate the student and its EMA at every validation, under a plain
``Runner.from_cfg(Config.fromfile(...))`` (mmdet's tools/train.py), with nothing injected."""

import argparse
import glob
import json
import os.path as osp
import uuid

import pytest
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import REPO_ROOT, synth_train_options

CONFIG = f'{REPO_ROOT}/configs/oddetr/oddetr_tiny-s_1xb8-synth.py'


def _cfg(work_dir, data_root, iters: int, **cfg_options) -> Config:
    parser = argparse.ArgumentParser()
    parser.add_argument('--options', nargs='+', action=DictAction)
    options = parser.parse_args(
        ['--options', *synth_train_options(data_root, iters, external_teacher=False)]
    ).options
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(dict(options, work_dir=str(work_dir), **cfg_options))
    cfg.experiment_name = uuid.uuid4().hex
    return cfg


def _scalars(work_dir) -> list:
    (path,) = glob.glob(osp.join(str(work_dir), '*', 'vis_data', 'scalars.json'))
    with open(path) as f:
        return [json.loads(line) for line in f]


@pytest.mark.parametrize('config', sorted(glob.glob(f'{REPO_ROOT}/configs/oddetr/*.py')))
def test_every_oddetr_config_validates_both_and_tests_the_student(config):
    cfg = Config.fromfile(config)
    assert cfg.val_cfg.type == 'StudentAndEMAValLoop'
    assert cfg.test_cfg.type == 'TestLoop'  # tools/test.py: the student, as for every method


@pytest.mark.slow
def test_validation_logs_student_and_ema_ap_and_keeps_the_best_student(tmp_path):
    data_root = tmp_path / 'data'
    make_synthetic_coco(str(data_root), 8, 4, img_size=96, verbose=False)
    best = {'default_hooks.checkpoint.save_best': 'coco/bbox_mAP'}
    Runner.from_cfg(_cfg(tmp_path / 'run', data_root, 2, **best)).train()

    (val,) = [r for r in _scalars(tmp_path / 'run') if 'coco/bbox_mAP' in r]  # one validation
    for key in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'):
        assert f'ema/coco/{key}' in val and f'coco/{key}' in val
    assert osp.isfile(tmp_path / 'run' / 'best_coco_bbox_mAP_iter_2.pth')

    # tools/test.py evaluates both with test_cfg.type=StudentAndEMATestLoop: the same numbers
    loop = {'test_cfg.type': 'StudentAndEMATestLoop', 'load_from': str(tmp_path / 'run/iter_2.pth')}
    test = Runner.from_cfg(_cfg(tmp_path / 'test', data_root, 2, **loop)).test()
    assert test['coco/bbox_mAP'] == val['coco/bbox_mAP']
    assert test['ema/coco/bbox_mAP'] == val['ema/coco/bbox_mAP']
