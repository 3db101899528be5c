"""Hungarian solves on host threads: same result at any thread count, and how many threads."""

import importlib

import numpy as np
import pytest
import torch
from matching_inputs import random_layers
from scipy.optimize import linear_sum_assignment

from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.models.task_modules import assignment_solver as solver_module
from mmdet_detrdistill.models.task_modules import mix_matcher as mix_matcher_module
from mmdet_detrdistill.models.task_modules.assignment_solver import (
    check_solver_threads,
    default_solver_threads,
    solve_assignment_stream,
    solve_assignments,
)


def _has(module):
    """Whether an optional solver package imports (they are not CI dependencies)."""
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


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


HOST_SOLVERS = [
    'scipy',
    pytest.param('lapx', marks=pytest.mark.skipif(not _has('lap'), reason='lapx not installed')),
]


@pytest.mark.parametrize(
    'shape',  # (layers, images, Ns, Nt): DINO's 900 x 900 and 900 x 300-like, shrunk
    [(3, 2, 120, 120), (3, 2, 150, 70), (2, 2, 70, 150), (4, 2, 25, 25), (2, 2, 9, 0)],
)
@pytest.mark.parametrize('threads', [1, 2, None])
@pytest.mark.parametrize('solver', HOST_SOLVERS)
def test_stream_of_stacks_gives_the_one_call_result(shape, threads, solver):
    """Solving layer after layer (pipelined) gives the pairs of one call on all the layers'
    matrices, in order; scipy's are each matrix's lone-call pairs."""
    costs = torch.from_numpy(np.random.default_rng(sum(shape)).random(shape).astype(np.float32))
    rows, cols = solve_assignment_stream((layer for layer in costs), threads, solver)
    flat = costs.flatten(0, 1).numpy()
    expected = solve_assignments(flat, threads, solver)
    assert np.array_equal(rows, expected[0]) and np.array_equal(cols, expected[1])
    assert rows.shape == (shape[0] * shape[1], min(shape[2:]))
    if min(shape[2:]):
        lone = _lone_calls(flat)
        assert np.array_equal(rows, lone[0]) and np.array_equal(cols, lone[1])


def test_stream_of_no_stacks_is_empty():
    rows, cols = solve_assignment_stream(iter(()))
    assert rows.shape == cols.shape == (0, 0)


def test_stream_solves_a_stack_while_the_next_is_computed(monkeypatch):
    """Each stack's matrices are handed to the pool before the next stack is computed."""
    events = []
    real_pool = solver_module.ThreadPoolExecutor

    class RecordingPool(real_pool):
        def submit(self, fn, *args):
            events.append('submitted')
            return super().submit(fn, *args)

    monkeypatch.setattr(solver_module, 'ThreadPoolExecutor', RecordingPool)
    costs = torch.from_numpy(np.random.default_rng(0).random((3, 2, 100, 100)))

    def stacks():
        for stack in costs:
            events.append('computed')
            yield stack

    solve_assignment_stream(stacks(), 1)
    assert events == ['computed', 'submitted', 'submitted'] * 3


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


@pytest.mark.parametrize('batched_costs', [True, False])
@pytest.mark.parametrize('solver_threads', [1, 3])
def test_all_layers_at_once_equal_layer_by_layer(batched_costs, solver_threads):
    """One call for L layers gives each layer's lone ``adaptive_match`` (images of different
    sizes, so that each image keeps its own metas in every layer)."""
    metas = [dict(img_shape=(64, 80)), dict(img_shape=(128, 96)), dict(img_shape=(48, 112))]
    layers = random_layers(4, 3, 110, 100, seed=solver_threads)  # large enough to be threaded
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
    from mmdet_detrdistill.models.task_modules.pairing import solve_pairings

    s_cls, s_box, _, _ = random_layers(2, 2, 9, 9, seed=1)
    t_cls, t_box, _, _ = random_layers(5, 2, 9, 9, seed=2)
    metas = [dict(img_shape=(64, 80)), dict(img_shape=(96, 96))]
    student = DecoderOutputs(s_cls, s_box, {OWN_GROUP: slice(0, 9)}, own_queries=None)
    teacher = DecoderOutputs(t_cls, t_box, {OWN_GROUP: slice(0, 9)}, own_queries=None)
    kd = AdaptiveMatchKD()
    layers = kd.matcher.layer_pairs(2, 5)
    assert layers == [(0, 1), (1, 4)]
    calls = []
    real_solve = mix_matcher_module.solve_assignment_stream

    def counting(stacks, threads, solver):
        stacks = list(stacks)
        calls.append(sum(len(stack) for stack in stacks))
        return real_solve(stacks, threads, solver)

    monkeypatch.setattr(mix_matcher_module, 'solve_assignment_stream', counting)
    solved = solve_pairings(kd.pairings(), student, teacher, metas)[kd.pairing]
    assert calls == [2 * 2]  # one call, layers x images matrices
    assert [(s_l, t_l) for s_l, t_l, _ in solved.layers] == layers
    for s_l, t_l, (s_idx, t_idx) in solved.layers:
        alone = MixMatcher().adaptive_match(s_cls[s_l], s_box[s_l], t_cls[t_l], t_box[t_l], metas)
        assert torch.equal(s_idx, alone[0]) and torch.equal(t_idx, alone[1])


# --- solver backends (issue 22, item 4) ---------------------------------------------------

BACKENDS = [
    'scipy',
    'auto',
    pytest.param('lapx', marks=pytest.mark.skipif(not _has('lap'), reason='lapx not installed')),
    pytest.param(
        'torch_linear_assignment',
        marks=pytest.mark.skipif(
            not _has('torch_linear_assignment'), reason='torch-linear-assignment not installed'
        ),
    ),
]


@pytest.mark.parametrize('solver', BACKENDS)
@pytest.mark.parametrize('shape', [(6, 140, 130), (5, 90, 120), (12, 25, 25), (3, 30, 30)])
def test_every_backend_gives_scipy_pairs_on_random_costs(solver, shape):
    """Continuous costs have one optimum: every backend returns scipy's pairs, by column."""
    costs = np.random.default_rng(shape[0]).random(shape).astype(np.float32)
    expected = _lone_calls(costs)
    for threads in (1, 3):
        rows, cols = solve_assignments(costs, threads, solver)
        assert np.array_equal(rows, expected[0]) and np.array_equal(cols, expected[1])
        rows, cols = solve_assignments(torch.from_numpy(costs), threads, solver)  # host tensor
        assert np.array_equal(rows, expected[0]) and np.array_equal(cols, expected[1])


@pytest.mark.parametrize('solver', BACKENDS)
@pytest.mark.parametrize('shape', [(6, 20, 20), (6, 20, 12), (4, 8, 15)])
def test_every_backend_is_optimal_on_tied_costs(solver, shape):
    """Integer costs tie: a backend may pick another optimum, never a worse one; every column
    (or row) is used once, pairs sorted by column."""
    costs = np.random.default_rng(1).integers(0, 3, shape).astype(np.float32)
    expected = _lone_calls(costs)
    rows, cols = solve_assignments(costs, 2, solver)
    k = min(shape[1:])
    assert rows.shape == cols.shape == (shape[0], k)
    for c, r, col, (er, ec) in zip(costs, rows, cols, zip(*expected)):
        assert np.all(np.diff(col) > 0) and len(set(r.tolist())) == k
        assert c[r, col].sum() == c[er, ec].sum()


@pytest.mark.parametrize('solver', BACKENDS)
def test_every_backend_handles_empty_problems(solver):
    rows, cols = solve_assignments(np.zeros((0, 5, 7)), 2, solver)
    assert rows.shape == cols.shape == (0, 5)
    rows, cols = solve_assignments(np.zeros((3, 5, 0)), 2, solver)
    assert rows.shape == cols.shape == (3, 0)


@pytest.mark.parametrize('shape', [(3, 7, 5), (3, 5, 7), (2, 6, 6), (0, 4, 4), (2, 4, 0)])
def test_torch_linear_assignment_pairs_are_scipy_pairs_by_column(shape):
    """The index conversion of the CUDA path, run on CPU tensors (the package's CPU path)."""
    pytest.importorskip('torch_linear_assignment')
    from mmdet_detrdistill.models.task_modules.assignment_backends import (
        torch_linear_assignment_pairs,
    )

    costs = torch.rand(shape, generator=torch.Generator().manual_seed(0))
    rows, cols = torch_linear_assignment_pairs(costs)
    expected = _lone_calls(costs.numpy()) if shape[0] else (np.zeros((0, 4)),) * 2
    assert np.array_equal(rows.numpy(), expected[0]) and np.array_equal(cols.numpy(), expected[1])


@pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')
def test_cuda_costs_stay_on_the_device_with_torch_linear_assignment(monkeypatch):
    """CUDA costs are solved without a host copy and give scipy's pairs."""
    pytest.importorskip('torch_linear_assignment')
    costs = torch.rand(12, 90, 80, generator=torch.Generator().manual_seed(0))
    expected = _lone_calls(costs.numpy())
    rows, cols = solve_assignments(costs.cuda(), None, 'torch_linear_assignment')
    assert rows.is_cuda and cols.is_cuda
    assert np.array_equal(rows.cpu().numpy(), expected[0])
    assert np.array_equal(cols.cpu().numpy(), expected[1])


@pytest.mark.parametrize('cuda_costs', [False, True])
@pytest.mark.parametrize('have_lapx', [False, True])
@pytest.mark.parametrize('have_tla', [False, True])
def test_auto_picks_per_device_among_installed_packages(
    monkeypatch, cuda_costs, have_lapx, have_tla
):
    """'auto': CUDA costs stay on the GPU with torch-linear-assignment when installed; otherwise
    the host solves them, with lapx when installed, else scipy. Other names mean themselves."""
    from mmdet_detrdistill.models.task_modules import assignment_backends as backends

    have = {'lapx': have_lapx, 'torch_linear_assignment': have_tla}
    monkeypatch.setattr(backends, 'installed', lambda solver: have[solver])
    chosen = backends.resolve_solver('auto', cuda_costs)
    if cuda_costs and have_tla:
        assert chosen == 'torch_linear_assignment'
    else:
        assert chosen == ('lapx' if have_lapx else 'scipy')
    for name in ('scipy', 'lapx', 'torch_linear_assignment'):
        assert backends.resolve_solver(name, cuda_costs) == name
    host = torch.zeros(1, 2, 2)
    assert not backends.uses_device_costs('auto', host)  # host costs never count as on-device


def test_auto_needs_no_optional_package(monkeypatch):
    """Without lapx and torch-linear-assignment, 'auto' builds and solves with scipy."""
    from mmdet_detrdistill.models.task_modules import assignment_backends as backends

    monkeypatch.setattr(backends, 'installed', lambda solver: False)
    seen = []
    real = solver_module.linear_sum_assignment
    monkeypatch.setattr(solver_module, 'linear_sum_assignment', lambda c: seen.append(1) or real(c))
    costs = np.random.default_rng(0).random((3, 20, 20)).astype(np.float32)
    rows, cols = solve_assignments(costs, 1, 'auto')
    assert len(seen) == 3
    assert np.array_equal(cols, _lone_calls(costs)[1])


def test_auto_choice_is_logged_once(monkeypatch):
    from mmdet_detrdistill.models.task_modules import mix_matcher as mm

    logged = []
    monkeypatch.setattr(mm, 'print_log', lambda msg, logger=None: logged.append(msg))
    matcher = MixMatcher(solver='auto')
    layers = random_layers(2, 2, 12, 10)
    metas = [dict(img_shape=(64, 80))] * 2
    for _ in range(3):
        matcher.adaptive_match_layers(*layers, metas)
    assert len(logged) == 1 and "solver='auto' solves cpu costs with" in logged[0]
    MixMatcher(solver='scipy').adaptive_match_layers(*layers, metas)
    assert len(logged) == 1


def test_unknown_solver_names_the_key():
    with pytest.raises(ValueError, match=r'model\.matcher\.solver.*one of'):
        MixMatcher(solver='hungarian')
    with pytest.raises(ValueError, match='solver must be one of'):
        solve_assignments(np.zeros((1, 3, 3)), 1, 'hungarian')


@pytest.mark.parametrize(
    ('solver', 'module', 'pip'),
    [('lapx', 'lap', 'lapx'), ('torch_linear_assignment', 'torch_linear_assignment', 'torch-')],
)
def test_missing_package_says_how_to_install_it(monkeypatch, solver, module, pip):
    from mmdet_detrdistill.models.task_modules import assignment_backends

    real_import = importlib.import_module

    def failing_import(name, *args, **kwargs):
        if name == module:
            raise ImportError(f'No module named {name!r}')
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(assignment_backends.importlib, 'import_module', failing_import)
    with pytest.raises(ImportError, match=rf'model\.matcher\.solver.*pip install {pip}'):
        MixMatcher(solver=solver)
    assert MixMatcher().solver == 'scipy'  # the default needs no optional package


@pytest.mark.parametrize('solver', BACKENDS)
def test_matcher_solver_gives_scipy_pairs(solver, monkeypatch):
    """``MixMatcher(solver=...)`` reaches the solver and matches as scipy does."""
    seen = []
    real_solve = mix_matcher_module.solve_assignment_stream
    monkeypatch.setattr(
        mix_matcher_module,
        'solve_assignment_stream',
        lambda stacks, threads, solver: seen.append(solver) or real_solve(stacks, threads, solver),
    )
    metas = [dict(img_shape=(64, 80)), dict(img_shape=(128, 96))]
    layers = random_layers(3, 2, 110, 100, seed=4)
    s_idx, t_idx = MixMatcher(solver=solver).adaptive_match_layers(*layers, metas)
    assert seen == [solver]
    monkeypatch.setattr(mix_matcher_module, 'solve_assignment_stream', real_solve)
    ref = MixMatcher().adaptive_match_layers(*layers, metas)
    assert torch.equal(s_idx, ref[0]) and torch.equal(t_idx, ref[1])


def test_solver_reaches_the_matchers_from_a_distiller_config():
    """``model.matcher.solver`` (D3ETR) and ``model.logits_kd.matcher.solver`` (DETRDistill)
    reach every matcher the distiller builds."""
    pytest.importorskip('lap')
    from mmengine.config import Config

    from mmdet_detrdistill.models.task_modules import MixMatcher as Matcher

    cfg = Config.fromfile('configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py')
    cfg.model.matcher.solver = 'lapx'
    matchers = _built_matchers(cfg.model, Matcher)
    assert matchers and all(m.solver == 'lapx' for m in matchers)
    cfg = Config.fromfile('configs/detrdistill/detrdistill_tiny-t_tiny-s_1xb8-synth.py')
    cfg.model.logits_kd = dict(
        matcher=dict(type='MixMatcher', adaptive=True, fixed=False, solver='lapx')
    )
    matchers = _built_matchers(cfg.model, Matcher)
    assert matchers and any(m.solver == 'lapx' for m in matchers)


def _built_matchers(model_cfg, matcher_cls):
    from mmdet.registry import MODELS

    import mmdet_detrdistill  # noqa: F401  (registers the distillers)

    model = MODELS.build(dict(model_cfg, allow_untrained_teacher=True))
    return [v for m in model.modules() for v in vars(m).values() if isinstance(v, matcher_cls)]
