"""A method config run by a plain ``Runner.from_cfg(Config.fromfile(...))``, without
tools/train.py: resume never executes stored config text, and is exact."""

import argparse
import uuid

import pytest
import torch
from mmengine.config import Config, DictAction
from mmengine.hooks import Hook
from mmengine.runner import Runner

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import REPO_ROOT, synth_train_options

CONFIG = f'{REPO_ROOT}/configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'  # dropout 0.1


class LossRecorder(Hook):
    def __init__(self) -> None:
        self.losses = {}

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        self.losses[runner.iter + 1] = float(outputs['loss'])


def _train(work_dir, data_root, iters, **cfg_options):
    parser = argparse.ArgumentParser()
    parser.add_argument('--options', nargs='+', action=DictAction)
    options = parser.parse_args(['--options', *synth_train_options(data_root, iters)]).options
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(dict(options, work_dir=str(work_dir), **cfg_options))
    cfg.experiment_name = uuid.uuid4().hex
    cfg.val_cfg = cfg.val_dataloader = cfg.val_evaluator = None  # training only
    runner = Runner.from_cfg(cfg)
    recorder = LossRecorder()
    runner.register_hook(recorder)
    runner.train()
    return recorder.losses


@pytest.mark.slow  # trains, then resumes under a plain Runner
def test_plain_runner_resume_is_exact_and_executes_no_config(tmp_path):
    data_root = tmp_path / 'data'
    make_synthetic_coco(str(data_root), 8, 2, img_size=96, verbose=False)
    straight = _train(tmp_path / 'straight', data_root, 3)
    first = _train(tmp_path / 'resumed', data_root, 2)
    # a checkpoint whose meta['config'] runs code when mmengine's resume reads it
    marker = tmp_path / 'executed.txt'
    path = tmp_path / 'resumed' / 'iter_2.pth'
    checkpoint = torch.load(path, weights_only=False)
    checkpoint['meta']['config'] = f"x = __import__('os').system('touch {marker}')\n"
    torch.save(checkpoint, path)
    second = _train(tmp_path / 'resumed', data_root, 3, resume=True)
    assert not marker.exists()
    assert sorted(straight) == [1, 2, 3] and sorted(second) == [3]
    assert {**first, **second} == straight  # same data, dropout masks and optimizer state
