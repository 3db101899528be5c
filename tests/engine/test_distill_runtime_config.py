"""Every method config carries what a run needs (configs/_base_/distill_runtime.py)."""

import glob
import os.path as osp

import pytest
from mmengine.config import Config

from mmdet_detrdistill.testing import REPO_ROOT

METHODS = ('d3etr', 'detrdistill', 'oddetr')
METHOD_CONFIGS = sorted(
    {
        osp.relpath(path, REPO_ROOT)
        for method in METHODS
        for pattern in (f'{method}/*.py', f'*/{method}_*.py')  # own_dataset/detrdistill_...
        for path in glob.glob(osp.join(REPO_ROOT, 'configs', pattern))
    }
)


@pytest.mark.parametrize('config', METHOD_CONFIGS)
def test_method_config_has_runtime_hooks(config):
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    checkpoint = cfg.default_hooks.checkpoint
    assert checkpoint.type == 'AtomicCheckpointHook'
    assert 'interval' in checkpoint  # mmdet's (or the embedded default's) settings are kept
    assert [h.type for h in cfg.custom_hooks][:2] == ['DropExecutableConfigHook', 'RNGStateHook']
    assert 'mmdet_detrdistill' in cfg.custom_imports.imports


def test_config_adding_custom_hooks_keeps_ours(tmp_path):
    base = osp.join(REPO_ROOT, 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py')
    derived = tmp_path / 'with_ema.py'
    derived.write_text(
        f'_base_ = {base!r}\ncustom_hooks = [*_base_.custom_hooks, dict(type="EMAHook")]\n'
    )
    types = [h.type for h in Config.fromfile(str(derived)).custom_hooks]
    assert types == ['DropExecutableConfigHook', 'RNGStateHook', 'EMAHook']
