"""Every model config in configs/ builds and runs one training step on CPU."""

import glob
import inspect
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS, TASK_UTILS

from mmdet_detrdistill.testing import make_batch, smoke_model_cfg

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
# every config with a model: all of configs/ but the data-only base of the embedded default
# and the runtime-only bases of configs/_base_/
CONFIGS = sorted(
    p
    for p in glob.glob(osp.join(ROOT, 'configs', '**', '*.py'), recursive=True)
    if not osp.basename(p).startswith('synth-coco_data')
    and osp.basename(osp.dirname(p)) != '_base_'
)
DISTILL_PREFIXES = ('d3etr.', 'detrdistill.', 'oddetr.')


def test_configs_are_found():
    dirs = {osp.basename(osp.dirname(p)) for p in CONFIGS}
    assert {'d3etr', 'detrdistill', 'teachers', 'students', 'own_dataset', 'embedded'} <= dirs


def _tiny(path: str) -> bool:
    """The configs of the embedded default (tiny models on generated data)."""
    return path.endswith('-synth.py') or path.endswith('_synth.py')


TINY = [p for p in CONFIGS if _tiny(p)]


def _registered(cfg, registry, path: str) -> None:
    """Every ``type`` in a config dict tree names a class of mmdet's registries."""
    if isinstance(cfg, dict):
        name = cfg.get('type')
        if isinstance(name, str) and '.' not in name:
            assert registry.get(name) is not None or TASK_UTILS.get(name) is not None, (path, name)
        for value in cfg.values():
            _registered(value, registry, path)
    elif isinstance(cfg, (list, tuple)):
        for value in cfg:
            _registered(value, registry, path)


@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_resolves(path):
    """Fast, for every config: it loads, its teacher config resolves, every type is registered,
    the distiller accepts its arguments and carries the init_detector marker (the build itself
    runs in the step test)."""
    cfg = smoke_model_cfg(path)
    _registered(cfg, MODELS, path)
    if str(cfg['type']).endswith('Distiller'):  # mmdet's init_detector says "export first"
        assert cfg.get('backbone') == dict(init_cfg='distiller'), path
    cls = MODELS.get(cfg['type'])
    args = {k: v for k, v in cfg.items() if k not in ('type', '_scope_')}
    inspect.signature(cls).bind(**args)


@pytest.mark.parametrize('path', TINY, ids=lambda p: osp.relpath(p, ROOT))
def test_tiny_config_builds(path):
    """Fast: every config of the embedded default builds and initialises."""
    model = MODELS.build(smoke_model_cfg(path))
    model.init_weights()


@pytest.mark.slow  # real-size models (R50, R101, Swin-L) build, step and backpropagate
@pytest.mark.parametrize('path', CONFIGS, ids=lambda p: osp.relpath(p, ROOT))
def test_config_builds_and_steps(path):
    model = MODELS.build(smoke_model_cfg(path))
    model.init_weights()
    model.train()
    num_classes = getattr(model, 'student', model).bbox_head.num_classes
    # 160 px: two-stage Deformable DETR picks its top-300 proposals among the encoder's
    # tokens (20x20 + 10x10 + 5x5 + 3x3 here); a smaller image has fewer than 300. DINO's
    # top-900 need 224 px (28x28 + 14x14 + 7x7 + 4x4 tokens).
    models = (model, getattr(model, 'student', None), getattr(model, 'teacher', None))
    side = 224 if max(getattr(m, 'num_queries', 0) for m in models) > 300 else 160
    batch = make_batch(
        model, image_shapes=((3, side, side), (3, side, side * 4 // 5)), num_classes=num_classes
    )
    losses = model(**batch, mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
    if hasattr(model, 'teacher'):
        if 'r101' in osp.basename(path):
            assert model.teacher.backbone.depth == 101 and model.student.backbone.depth == 50
        if '-zoo_' in osp.basename(path):  # mmdet's published R50 teacher, an R18 student
            assert model.teacher.backbone.depth == 50 and model.student.backbone.depth == 18
        assert any(k.startswith(DISTILL_PREFIXES) for k in losses)
        assert all(p.grad is None for p in model.teacher.parameters())
