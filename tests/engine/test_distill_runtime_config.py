"""Every config carries what a run needs (configs/_base_/distill_runtime.py); no tool adds it."""

import glob
import importlib.util
import os.path as osp
from types import SimpleNamespace

import pytest
from mmengine.config import Config

from mmdet_detrdistill.testing import REPO_ROOT

CONFIG_DIR = osp.join(REPO_ROOT, 'configs')
# pieces for `_base_`, not runs
FRAGMENTS = ('_base_/distill_runtime.py', 'embedded/synth-coco_data.py')
CONFIGS = sorted(
    osp.relpath(path, REPO_ROOT)
    for path in glob.glob(osp.join(CONFIG_DIR, '**', '*.py'), recursive=True)
    if osp.relpath(path, CONFIG_DIR) not in FRAGMENTS
)
METHODS = ('d3etr', 'detrdistill', 'oddetr')
METHOD_CONFIGS = {
    osp.relpath(path, REPO_ROOT)
    for method in METHODS
    for pattern in (f'{method}/*.py', f'*/{method}_*.py')  # own_dataset/detrdistill_...
    for path in glob.glob(osp.join(CONFIG_DIR, pattern))
}
RUNTIME_HOOKS = ['DropExecutableConfigHook', 'RNGStateHook']


@pytest.mark.parametrize('config', CONFIGS)
def test_every_config_trains_with_the_runtime_hooks_of_its_own(config):
    """Teachers, students, the embedded default and the methods alike: the hooks and the import
    that registers them come from the config, so mmdet's tools/train.py runs it as ours does."""
    cfg = Config.fromfile(osp.join(REPO_ROOT, config))
    assert {'train_dataloader', 'train_cfg', 'optim_wrapper'} <= set(cfg)  # a run, not a piece
    assert [h.type for h in cfg.custom_hooks][:2] == RUNTIME_HOOKS
    assert 'mmdet_detrdistill' in cfg.custom_imports.imports
    if config in METHOD_CONFIGS:
        checkpoint = cfg.default_hooks.checkpoint
        assert checkpoint.type == 'AtomicCheckpointHook'
        assert 'interval' in checkpoint  # mmdet's (or the embedded default's) settings are kept


def test_every_method_config_is_checked():
    assert len(METHOD_CONFIGS) > 40 and METHOD_CONFIGS <= set(CONFIGS)


def test_config_adding_custom_hooks_keeps_ours(tmp_path):
    base = osp.join(REPO_ROOT, 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py')
    derived = tmp_path / 'with_ema.py'
    derived.write_text(
        f'_base_ = {base!r}\ncustom_hooks = [*_base_.custom_hooks, dict(type="EMAHook")]\n'
    )
    types = [h.type for h in Config.fromfile(str(derived)).custom_hooks]
    assert types == [*RUNTIME_HOOKS, 'EMAHook']


def test_tools_train_adds_no_hook(tmp_path):
    """tools/train.py runs a config's hooks as written, as mmdet's own tools/train.py does."""
    spec = importlib.util.spec_from_file_location(
        'train_tool', osp.join(REPO_ROOT, 'tools', 'train.py')
    )
    train = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(train)
    config = tmp_path / 'ema_only.py'
    config.write_text('custom_hooks = [dict(type="EMAHook")]\n')
    args = SimpleNamespace(
        config=str(config),
        launcher='none',
        cfg_options=None,
        work_dir=str(tmp_path),
        amp=False,
        auto_scale_lr=False,
        resume=None,
    )
    assert [h['type'] for h in train.build_cfg(args).custom_hooks] == ['EMAHook']
