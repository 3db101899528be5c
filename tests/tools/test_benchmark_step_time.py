"""benchmark_step_time.py (tools/analysis_tools/) reports step times, matching and peak memory."""

import os.path as osp
import re
import sys
from types import SimpleNamespace

import pytest
import torch

from mmdet_detrdistill.testing import make_batch, run_tool

sys.path.insert(0, osp.join(osp.dirname(__file__), '..', '..', 'tools', 'analysis_tools'))
import benchmark_step_time  # noqa: E402

CONFIG = 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'
SCRIPT = 'tools/analysis_tools/benchmark_step_time.py'


def _value(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f'{pattern!r} not in:\n{text}'
    return float(match.group(1))


def test_benchmark_reports_time_matching_and_memory():
    args = [SCRIPT, CONFIG, '--size', '64', '--batch', '2', '--iters', '1']
    run = run_tool([*args, '--solver-threads', '3'])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert 'solver threads: 3,' in out  # --solver-threads reached the matchers
    assert _value(r'matching per step \| ([\d.]+) s', out) > 0  # adaptive_match was timed
    student = _value(r'peak memory, student step alone \| ([\d.]+) MiB', out)
    distill = _value(r'peak memory, distill step \| ([\d.]+) MiB', out)
    assert 0 < student < distill  # the distiller holds the teacher too
    ratio = _value(r'peak memory ratio distill step / student step alone: ([\d.]+)', out)
    assert abs(ratio - distill / student) < 0.01
    # the training step's peak holds the optimizer's state as well (AdamW: 2 per parameter)
    student_fwd_bwd = _value(r'without the optimizer, student alone \| ([\d.]+) MiB', out)
    distill_fwd_bwd = _value(r'without the optimizer, distill \| ([\d.]+) MiB', out)
    assert student_fwd_bwd < student and distill_fwd_bwd < distill
    no_opt = _value(r'student step alone, without the optimizer: ([\d.]+)', out)
    assert abs(no_opt - distill_fwd_bwd / student_fwd_bwd) < 0.01 and no_opt > ratio
    assert _value(r'ratio distill / \(student step \+ teacher forward\): ([\d.]+)', out) > 0


def test_several_configs_give_one_summary_row_each():
    configs = [CONFIG, 'configs/oddetr/oddetr_tiny-s_1xb8-synth.py']
    args = [
        SCRIPT,
        *configs,
        '--size',
        '64',
        '--batch',
        '1',
        '--iters',
        '1',
    ]
    run = run_tool(args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    summary = run.stdout.split('\nsummary')[-1]
    rows = [ln for ln in summary.splitlines() if ln.startswith('| `')]
    assert [ln.split('`')[1] for ln in rows] == configs
    for config, row in zip(configs, rows):
        cells = [c.strip() for c in row.strip('|').split('|')]
        assert len(cells) == 9 and cells[1] == '1 x 64 px'
        per_config = run.stdout.split(f'config: {config}')[1]
        step = _value(r'ratio distill / \(student step \+ teacher forward\): ([\d.]+)', per_config)
        assert abs(float(cells[5]) - step) <= 0.0051  # the summary repeats the per-config ratio
    d3etr, oddetr = ([c.strip() for c in row.strip('|').split('|')] for row in rows)
    assert d3etr[6].endswith('%') and float(d3etr[6][:-1]) > 0
    assert oddetr[6] == '— (none)'  # OD-DETR matches no teacher predictions to the student's


@pytest.mark.parametrize(
    'config',
    [
        'configs/d3etr/d3etr_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
        'configs/detrdistill/detrdistill_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
    ],
)
def test_dino_rows_report_a_matching_share(config, monkeypatch):
    """DINO beside the other families: the teacher-student matching of its queries is timed,
    for D3ETR's adaptive matching and for DETRDistill's logits KD (in this process: the times
    of the table's row, without its memory probes)."""
    monkeypatch.setattr(benchmark_step_time, 'WARMUP', 0)
    opts = SimpleNamespace(config=config, size=64, batch=1, iters=1, seed=0, solver_threads=None)
    times = benchmark_step_time.measure_times(opts, torch.device('cpu'))
    assert times['matching_calls'] > 0 and times['matching'] > 0
    r = benchmark_step_time.ratios(times, dict(student=None, distill=None))
    assert 0 < r['matching'] < 1 and benchmark_step_time._share(r).endswith('%')


def test_bad_solver_threads_are_refused_before_any_work():
    run = run_tool([SCRIPT, CONFIG, '--solver-threads', '0'])
    assert run.returncode != 0
    assert '--solver-threads: solver_threads must be a positive int' in run.stderr


def test_a_timed_step_is_a_training_step_with_the_configs_optimizer():
    """Forward, backward, clipping, AdamW's update and zero_grad, as mmengine's train_step."""
    distiller = benchmark_step_time.build_distiller(CONFIG, torch.device('cpu'))
    wrapper = benchmark_step_time.optim_wrapper_for(CONFIG, distiller)
    assert type(wrapper.optimizer).__name__ == 'AdamW' and wrapper.clip_grad_kwargs
    batch = make_batch(distiller)
    before = [p.clone() for p in distiller.student.parameters()]
    benchmark_step_time.train_step(distiller, batch, wrapper)()
    params = list(distiller.student.parameters())
    assert all(p.grad is None for p in params)  # zero_grad after the update
    assert all(len(wrapper.optimizer.state[p]) > 0 for p in params)  # AdamW state for each
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


FAULTS_PER_STEP = """
import resource, sys, torch
sys.path.insert(0, 'tools/analysis_tools')
import benchmark_step_time as b
if sys.argv[1] == 'keep':
    assert b.keep_freed_memory()
x = torch.randn(10 * 2**20)  # 40 MiB: above glibc's largest mmap threshold (32 MiB)
def step() -> int:
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    (x * 2 + 1).sum()  # two 40 MiB temporaries, freed at the end
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
print(*[step() for _ in range(8)])
"""


def test_allocator_keep_reuses_freed_memory_without_page_faults():
    """With ``keep``, later steps reuse the memory earlier ones freed (no page faults); with
    glibc's defaults every step faults its temporaries in again."""
    faults = {}
    for mode in ('keep', 'release'):
        run = run_tool([sys.executable, '-c', FAULTS_PER_STEP, mode])
        assert run.returncode == 0, run.stderr[-3000:]
        faults[mode] = [int(n) for n in run.stdout.split()]
    # after two warm-ups (as the benchmark's), the six kept steps together fault in less
    # memory than any one released step (the heap may still grow once, by one temporary)
    assert min(faults['release'][2:]) > 20000, faults  # two 40 MiB temporaries: 20480 pages
    assert sum(faults['keep'][2:]) < min(faults['release'][2:]), faults


def test_timing_is_interleaved_so_that_load_drift_falls_on_every_side(monkeypatch):
    """Each round times every side once, in turn: with a load that doubles halfway through
    the run, the ratio of two sides of equal work stays 1 (timed one side after the other,
    it would be 2)."""
    calls, clock = [], [0.0]
    monkeypatch.setattr(benchmark_step_time.time, 'perf_counter', lambda: clock[0])

    def side(name):
        def fn():
            calls.append(name)
            clock[0] += 1.0 if len(calls) <= 3 * (benchmark_step_time.WARMUP + 3) else 2.0

        return fn

    times = benchmark_step_time._time_interleaved(
        dict(a=side('a'), b=side('b'), c=side('c')), 6, torch.device('cpu')
    )
    assert calls == ['a', 'b', 'c'] * (benchmark_step_time.WARMUP + 6)
    assert times['a'] == times['b'] == times['c']
