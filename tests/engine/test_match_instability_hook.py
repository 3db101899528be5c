"""MatchInstabilityHook: OD-DETR's (DN-DETR's) matching instability on a fixed probe set."""

import json
import random
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config
from mmengine.logging import MessageHub, MMLogger
from mmengine.runner import Runner

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.engine.match_instability_hook import (
    EMA_SCALAR_KEY,
    RECORD_FILE,
    SCALAR_KEY,
    MatchInstabilityHook,
    changed_fraction,
    final_layer_assignment,
    preserved_rng,
    trained_detector,
)
from mmdet_detrdistill.testing import REPO_ROOT, tiny_detr_cfg

CONFIG = f'{REPO_ROOT}/configs/oddetr/oddetr_tiny-s_1xb8-synth.py'


def _detector(family: str, distilled: bool) -> torch.nn.Module:
    """A tiny detector of ``family``; with ``distilled``, the student of an OD-DETR distiller."""
    cfg = tiny_detr_cfg(family)
    model = MODELS.build(dict(type='ODDETRDistiller', student=cfg) if distilled else cfg)
    model.init_weights()
    return trained_detector(model.train())


def _probe_set(num_batches: int = 2) -> list:
    """Raw (not preprocessed) batches of 2 images with 3 and 2 GT boxes."""
    return [
        demo_mm_inputs(2, [(3, 64, 64), (3, 64, 48)], num_items=[3, 2], num_classes=3)
        for _ in range(num_batches)
    ]


def test_trained_detector_is_a_distillers_student():
    model = MODELS.build(dict(type='ODDETRDistiller', student=tiny_detr_cfg('dab')))
    assert trained_detector(model) is model.student
    plain = MODELS.build(tiny_detr_cfg('dab'))
    assert trained_detector(plain) is plain


@pytest.mark.parametrize('family', ['conditional', 'dab', 'deformable', 'deformable-twostage'])
@pytest.mark.parametrize('distilled', [False, True])
def test_unchanged_model_gives_zero_and_keeps_its_mode(family, distilled):
    detector = _detector(family, distilled)
    probes = _probe_set()
    first = final_layer_assignment(detector, probes)
    assert [len(q) for q in first] == [3, 2, 3, 2]
    assert all(((q >= 0) & (q < detector.num_queries)).all() for q in first)  # every GT matched
    assert changed_fraction(first, final_layer_assignment(detector, probes)) == 0
    assert detector.training  # restored after the eval-mode probe


@pytest.mark.parametrize('family', ['conditional', 'dab', 'deformable'])
@pytest.mark.parametrize('distilled', [False, True])
def test_permuting_the_queries_moves_each_match_with_its_query(family, distilled):
    """Query k of the permuted model is query perm[k] of the original: a GT matched to query q
    before is matched to inv[q] after, and changes iff the permutation moves q."""
    detector = _detector(family, distilled)
    probes = _probe_set()
    before = final_layer_assignment(detector, probes)
    # swap the query of image 0's first GT with the next query: that GT changes, and at least
    # one of image 0's two other GTs (matched to other queries) does not
    n, q = detector.num_queries, before[0][0].item()
    perm = torch.arange(n)
    perm[q], perm[(q + 1) % n] = (q + 1) % n, q
    inv = torch.argsort(perm)
    with torch.no_grad():
        detector.query_embedding.weight.copy_(detector.query_embedding.weight[perm])
    after = final_layer_assignment(detector, probes)
    for b, a in zip(before, after):
        assert torch.equal(a, inv[b])
    moved = torch.cat([inv[b] != b for b in before]).float().mean().item()
    assert 0 < moved < 1  # a known change, neither none nor all
    assert changed_fraction(before, after) == pytest.approx(moved)


def _records(work_dir) -> list:
    with open(work_dir / RECORD_FILE) as f:
        return [json.loads(line) for line in f]


def _probing(model, work_dir) -> tuple:
    """A stand-in runner at iteration 0 and a hook with the probe set matched once."""
    runner = SimpleNamespace(
        model=model,
        work_dir=str(work_dir),
        iter=0,
        message_hub=MessageHub.get_instance('probe_test'),
        logger=MMLogger.get_instance('probe_test'),
    )
    hook = MatchInstabilityHook(num_images=4, interval=1)
    hook._batches = _probe_set()
    hook._previous = hook._assignments(runner)
    return runner, hook


@pytest.mark.parametrize('family', ['conditional', 'deformable'])
def test_the_ema_model_is_probed_on_its_own(family, tmp_path):
    """A change of the student's queries moves the student's matches only: the EMA model's
    instability is measured on the EMA model, separately (OD-DETR's Fig. 1 compares both)."""
    model = MODELS.build(dict(type='ODDETRDistiller', student=tiny_detr_cfg(family)))
    model.init_weights()
    runner, hook = _probing(model.train(), tmp_path)
    assert hook.probe(runner, 'iter 1/2') == 0
    student = model.student
    n, q = student.num_queries, hook._previous[SCALAR_KEY][0][0].item()
    perm = torch.arange(n)
    perm[q], perm[(q + 1) % n] = (q + 1) % n, q
    with torch.no_grad():
        student.query_embedding.weight.copy_(student.query_embedding.weight[perm])
    runner.iter = 1
    assert hook.probe(runner, 'iter 2/2') > 0
    first, second = _records(tmp_path)
    assert first == {'iter': 1, SCALAR_KEY: 0.0, EMA_SCALAR_KEY: 0.0}
    assert second['iter'] == 2 and second[SCALAR_KEY] > 0 and second[EMA_SCALAR_KEY] == 0.0


def test_a_plain_detector_records_no_ema_value(tmp_path):
    runner, hook = _probing(_detector('conditional', distilled=False), tmp_path)
    hook.probe(runner, 'iter 1/1')
    assert _records(tmp_path) == [{'iter': 1, SCALAR_KEY: 0.0}]


def test_changed_fraction_counts_gt_boxes_over_all_images():
    before = [torch.tensor([4, 2, 0]), torch.tensor([1]), torch.tensor([], dtype=torch.long)]
    after = [torch.tensor([4, 3, 0]), torch.tensor([5]), torch.tensor([], dtype=torch.long)]
    assert changed_fraction(before, after) == pytest.approx(2 / 4)
    assert changed_fraction([torch.tensor([], dtype=torch.long)] * 2, [torch.tensor([])]) is None


def test_preserved_rng_leaves_every_generator_as_it_was():
    def draw():
        return random.random(), np.random.rand(), torch.rand(1).item()

    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    expected = draw()
    torch.manual_seed(0), np.random.seed(0), random.seed(0)
    with preserved_rng():
        draw()
    assert draw() == expected


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    make_synthetic_coco(str(root), 8, 2, img_size=96, verbose=False)
    return f'{root}/'


def _train(work_dir, data_root: str, with_hook: bool) -> Runner:
    """4 iterations of the tiny OD-DETR config, the hook probing 4 images every 2."""
    cfg = Config.fromfile(CONFIG)
    cfg.merge_from_dict(
        {
            'work_dir': str(work_dir),
            'experiment_name': f'hook_{with_hook}',
            'randomness.seed': 0,
            'train_cfg.max_iters': 4,
            'train_dataloader.batch_size': 2,
            'train_dataloader.dataset.data_root': data_root,
            'default_hooks.logger.interval': 1,
        }
    )
    cfg.val_dataloader = cfg.val_cfg = cfg.val_evaluator = None
    cfg.test_dataloader = cfg.test_cfg = cfg.test_evaluator = None
    hooks = [h for h in cfg.custom_hooks if h.type != 'MatchInstabilityHook']
    if with_hook:
        hooks.append(dict(type='MatchInstabilityHook', num_images=4, interval=2, batch_size=2))
    cfg.custom_hooks = hooks
    runner = Runner.from_cfg(cfg)
    runner.train()
    return runner


@pytest.mark.slow  # trains with and without the hook
def test_runner_logs_the_scalar_and_trains_as_without_the_hook(data_root, tmp_path):
    runner = _train(tmp_path / 'hook', data_root, with_hook=True)
    values, _ = runner.message_hub.get_scalar(f'train/{SCALAR_KEY}').data
    assert len(values) == 2 and all(0 <= v <= 1 for v in values)  # probes at 2 and 4
    records = _records(tmp_path / 'hook')  # the student's and the EMA model's, per probe
    assert [r['iter'] for r in records] == [2, 4]
    assert all(0 <= r[k] <= 1 for r in records for k in (SCALAR_KEY, EMA_SCALAR_KEY))
    assert [r[SCALAR_KEY] for r in records] == list(values)  # values: a numpy array
    # the probe set is built without drawing from training's random numbers
    plain = _train(tmp_path / 'plain', data_root, with_hook=False)
    trained, expected = runner.model.student.state_dict(), plain.model.student.state_dict()
    assert all(torch.equal(trained[k], expected[k]) for k in expected)
