"""benchmark_matching.py (tools/analysis_tools/) compares Hungarian solvers side by side."""

import sys

import benchmark_matching
import pytest
import torch
from mmdet.registry import TASK_UTILS
from mmdet.utils import register_all_modules

TINY = ['--sizes', '20', '--repeats', '2', '--threads', '2', '--topk', '8']


def _rows(results: dict, **where) -> list:
    return [r for r in results['rows'] if all(r.get(k) == v for k, v in where.items())]


@pytest.fixture(scope='module')
def results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp('matching') / 'matching.md'
    return benchmark_matching.main([*TINY, '--out', str(out)]) | dict(out=out)


def test_every_solver_has_a_row_with_numbers(results):
    for kind in ('structured', 'uniform'):
        exact = _rows(results, costs=kind, n=20, group='exact')
        solvers = {r['solver'] for r in exact}
        assert {'scipy serial', 'ours solve_assignments', 'torch-linear-assignment'} <= solvers
        assert any(s.startswith('lapx') for s in solvers)
        timed = [r for r in exact if r.get('note') != 'not installed']
        assert all(r['ms'] > 0 and r['ratio'] > 0 for r in timed)
        assert _rows(results, costs=kind, group='top-8 teacher', solver='scipy serial')


def test_threaded_solves_are_identical_to_scipy_serial(results):
    ours = _rows(results, solver='ours solve_assignments')
    assert {r['threads'] for r in ours} == {1, 2}
    assert all(r['identical'] == '12/12' and r['optimal'] == '12/12' for r in ours)


def test_table_written_with_numbers(results):
    text = results['out'].read_text()
    assert (results['out'].parent / 'results.json').exists()
    line = next(x for x in text.splitlines() if '| structured | 20 | exact | scipy serial |' in x)
    ms, ratio = (float(c) for c in line.split('|')[7:9])
    assert ms > 0 and ratio == 1.0


def test_absent_packages_give_not_installed_rows(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, 'lap', None)  # import raises ImportError
    monkeypatch.setitem(sys.modules, 'torch_linear_assignment', None)
    results = benchmark_matching.main([*TINY, '--out', str(tmp_path / 'm.md')])
    for solver in ('lapx', 'torch-linear-assignment'):
        rows = _rows(results, solver=solver, group='exact')
        assert len(rows) == 2 and all(r['note'] == 'not installed' for r in rows)
        assert all(r['ms'] is None for r in rows)
    assert 'lapx not installed' in results['header']['versions']


def test_inline_costs_equal_the_matchers():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 2, 7, benchmark_matching.NUM_CLASSES, generator=g)
    boxes = benchmark_matching._random_boxes(28, g).reshape(2, 2, 7, 4)
    inputs = (logits[0], boxes[0], logits[1], boxes[1])
    register_all_modules(init_default_scope=False)
    metas = [dict(img_shape=benchmark_matching.IMG_SHAPE)] * 2
    matcher = TASK_UTILS.build(dict(type='MixMatcher'))  # the matcher's own costs, no fallback
    expected = matcher.batch_cost_matrices(*inputs, metas)
    torch.testing.assert_close(benchmark_matching.inline_match_costs(*inputs), expected)
