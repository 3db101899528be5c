"""Hungarian solves on host threads: same result at any thread count, and how many threads."""

import numpy as np
import pytest
import torch
from scipy.optimize import linear_sum_assignment

from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.models.task_modules import assignment_solver as solver_module
from mmdet_detrdistill.models.task_modules import mix_matcher as mix_matcher_module
from mmdet_detrdistill.models.task_modules.assignment_solver import (
    check_solver_threads,
    default_solver_threads,
    solve_assignments,
)


def _lone_calls(costs):
    """scipy on each matrix alone, pairs sorted by column."""
    pairs = [linear_sum_assignment(c) for c in costs]
    return (
        np.stack([r[c.argsort()] for r, c in pairs]),
        np.stack([c[c.argsort()] for _, c in pairs]),
    )


@pytest.mark.parametrize('shape', [(6, 140, 130), (5, 90, 120), (12, 25, 25)])
def test_every_thread_count_gives_the_lone_calls_result(shape):
    costs = np.random.default_rng(shape[0]).random(shape).astype(np.float32)
    expected = _lone_calls(costs)
    for threads in (1, 2, 3, 64, None):
        rows, cols = solve_assignments(costs, threads)
        assert np.array_equal(rows, expected[0]) and np.array_equal(cols, expected[1])


def test_threads_are_used_up_to_the_number_of_matrices(monkeypatch):
    """The pool gets min(matrices, threads) workers; one worker means no pool at all."""
    pools = []
    real_pool = solver_module.ThreadPoolExecutor

    def recording_pool(workers, **kwargs):
        pools.append(workers)
        return real_pool(workers, **kwargs)

    monkeypatch.setattr(solver_module, 'ThreadPoolExecutor', recording_pool)
    costs = np.random.default_rng(0).random((12, 100, 100))
    solve_assignments(costs, 4)
    solve_assignments(costs[:3], 8)
    solve_assignments(costs, 1)
    assert pools == [4, 3]
    small = costs[:, :30, :99]  # below MIN_THREADED_ENTRIES: a pool would cost more than it saves
    assert small[0].size < solver_module.MIN_THREADED_ENTRIES
    rows, cols = solve_assignments(small, 4)
    assert pools == [4, 3]
    expected = _lone_calls(small)
    assert np.array_equal(rows, expected[0]) and np.array_equal(cols, expected[1])


def test_no_matrices_and_empty_matrices():
    rows, cols = solve_assignments(np.zeros((0, 5, 7)), 2)
    assert rows.shape == cols.shape == (0, 5)
    rows, cols = solve_assignments(np.zeros((3, 5, 0)), 2)
    assert rows.shape == cols.shape == (3, 0)


def test_default_is_this_process_share_of_the_cpus(monkeypatch):
    """Not OMP_NUM_THREADS (launchers set it to 1): usable CPUs // processes on the node."""
    monkeypatch.setattr(solver_module.os, 'sched_getaffinity', lambda pid: set(range(64)))
    monkeypatch.setenv('OMP_NUM_THREADS', '1')
    monkeypatch.delenv('LOCAL_WORLD_SIZE', raising=False)
    assert default_solver_threads() == 64
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '8')
    assert default_solver_threads() == 8
    monkeypatch.setenv('LOCAL_WORLD_SIZE', '128')
    assert default_solver_threads() == 1
    monkeypatch.setenv('LOCAL_WORLD_SIZE', 'not-a-number')
    assert default_solver_threads() == 64


@pytest.mark.parametrize('bad', [0, -2, 1.5, '4', True])
def test_bad_solver_threads_name_the_key(bad):
    with pytest.raises(ValueError, match='MixMatcher: solver_threads must be a positive int'):
        MixMatcher(solver_threads=bad)
    assert check_solver_threads(None, 'x') is None and check_solver_threads(3, 'x') == 3


def _layers(num_layers, bs, ns, nt, num_classes=5, seed=0):
    g = torch.Generator().manual_seed(seed)

    def preds(n):
        logits = torch.randn(num_layers, bs, n, num_classes, generator=g) * 3
        cxcy = torch.rand(num_layers, bs, n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(num_layers, bs, n, 2, generator=g) * 0.3 + 0.05
        return logits, torch.cat([cxcy, wh], -1)

    return (*preds(ns), *preds(nt))


@pytest.mark.parametrize('batched_costs', [True, False])
@pytest.mark.parametrize('solver_threads', [1, 3])
def test_all_layers_at_once_equal_layer_by_layer(batched_costs, solver_threads):
    """One call for L layers gives each layer's lone ``adaptive_match`` (images of different
    sizes, so that each image keeps its own metas in every layer)."""
    metas = [dict(img_shape=(64, 80)), dict(img_shape=(128, 96)), dict(img_shape=(48, 112))]
    layers = _layers(4, 3, 110, 100, seed=solver_threads)  # large enough to be threaded
    matcher = MixMatcher(batched_costs=batched_costs, solver_threads=solver_threads)
    s_idx, t_idx = matcher.adaptive_match_layers(*layers, metas)
    assert s_idx.shape == t_idx.shape == (4, 3, 100)
    for layer in range(4):
        alone = MixMatcher(batched_costs=batched_costs, solver_threads=1).adaptive_match(
            *(x[layer] for x in layers), metas
        )
        assert torch.equal(s_idx[layer], alone[0]) and torch.equal(t_idx[layer], alone[1])


def test_adaptive_component_matches_every_layer_pair_in_one_call(monkeypatch):
    """A 2-layer student from a 5-layer teacher: student layer l against teacher layer t(l),
    one solver call for all, the pairs each lone per-layer match gives."""
    from mmdet_detrdistill.models.common import OWN_GROUP, DecoderOutputs
    from mmdet_detrdistill.models.components import AdaptiveMatchKD

    s_cls, s_box, _, _ = _layers(2, 2, 9, 9, seed=1)
    t_cls, t_box, _, _ = _layers(5, 2, 9, 9, seed=2)
    metas = [dict(img_shape=(64, 80)), dict(img_shape=(96, 96))]
    student = DecoderOutputs(s_cls, s_box, {OWN_GROUP: slice(0, 9)}, own_queries=None)
    teacher = DecoderOutputs(t_cls, t_box, {OWN_GROUP: slice(0, 9)}, own_queries=None)
    kd = AdaptiveMatchKD()
    layers = kd.matcher.layer_pairs(2, 5)
    assert layers == [(0, 1), (1, 4)]
    calls = []
    real_solve = mix_matcher_module.solve_assignments
    monkeypatch.setattr(
        mix_matcher_module,
        'solve_assignments',
        lambda costs, threads: calls.append(len(costs)) or real_solve(costs, threads),
    )
    pairs = kd.match_layers(student, teacher, layers, metas)
    assert calls == [2 * 2]  # one call, layers x images matrices
    for (s_l, t_l), (s_idx, t_idx) in zip(layers, pairs):
        alone = MixMatcher().adaptive_match(s_cls[s_l], s_box[s_l], t_cls[t_l], t_box[t_l], metas)
        assert torch.equal(s_idx, alone[0]) and torch.equal(t_idx, alone[1])
