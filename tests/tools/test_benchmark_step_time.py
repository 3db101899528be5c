"""benchmark_step_time.py (tools/analysis_tools/) reports step times, matching and peak memory."""

import re
from types import SimpleNamespace

import benchmark_step_time
import pytest
import torch

from mmdet_detrdistill.testing import run_tool
from mmdet_detrdistill.testing.step_time import measure_times, ratios

pytestmark = pytest.mark.slow  # times training steps of several configs

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
        assert len(cells) == 10 and cells[1] == '1 x 64 px'
        per_config = run.stdout.split(f'config: {config}')[1]
        step = _value(r'ratio distill / \(student step \+ teacher forward\): ([\d.]+)', per_config)
        assert abs(float(cells[5]) - step) <= 0.0051  # the summary repeats the per-config ratio
    d3etr, oddetr = ([c.strip() for c in row.strip('|').split('|')] for row in rows)
    assert d3etr[6].endswith('%') and float(d3etr[6][:-1]) > 0
    assert oddetr[6] == '— (none)'  # OD-DETR matches no teacher predictions to the student's
    # less the trained teacher's weights: a lower ratio; OD-DETR's EMA is no trained teacher
    assert float(d3etr[9]) < float(d3etr[7]) and oddetr[9] == 'n/a'


@pytest.mark.parametrize(
    'config',
    [
        'configs/d3etr/d3etr_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
        'configs/detrdistill/detrdistill_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
    ],
)
def test_dino_rows_report_a_matching_share(config):
    """DINO beside the other families: the teacher-student matching of its queries is timed,
    for D3ETR's adaptive matching and for DETRDistill's logits KD (in this process: the times
    of the table's row, without its memory probes)."""
    opts = SimpleNamespace(config=config, size=64, batch=1, iters=1, seed=0, solver_threads=None)
    times = measure_times(opts, torch.device('cpu'), warmup=0)
    assert times['matching_calls'] > 0 and times['matching'] > 0
    r = ratios(times, dict(student=None, distill=None))
    assert 0 < r['matching'] < 1 and benchmark_step_time._share(r).endswith('%')


def test_bad_solver_threads_are_refused_before_any_work():
    run = run_tool([SCRIPT, CONFIG, '--solver-threads', '0'])
    assert run.returncode != 0
    assert '--solver-threads: solver_threads must be a positive int' in run.stderr


def test_cfg_options_reach_the_memory_probes_as_given(monkeypatch):
    """Each peak is measured in a fresh process: it gets ``--cfg-options`` too, item for item,
    so that the memory ratio is of the same model as the step ratio."""
    calls = []

    def fake_run(cmd, **kwargs):
        calls.append(cmd)
        return SimpleNamespace(returncode=0, stdout='MEMORY_PROBE {"peaks": {"train": 1}}\n')

    monkeypatch.setattr(benchmark_step_time.subprocess, 'run', fake_run)
    items = ['model.init_query=None', 'model.aux_groups.stages=[0,1]']
    monkeypatch.setattr('sys.argv', [SCRIPT, CONFIG, '--cfg-options', *items])
    args = benchmark_step_time.parse_args()
    assert args.cfg_options == {'model.init_query': None, 'model.aux_groups.stages': [0, 1]}
    args.config = CONFIG
    assert benchmark_step_time.measure_peak_memory(args, 'distill') == {'train': 1}
    cmd = calls[0]
    assert cmd[cmd.index('--cfg-options') + 1 :][: len(items)] == items


def test_a_malformed_cfg_option_is_refused_before_any_work():
    run = run_tool([SCRIPT, CONFIG, '--cfg-options', 'model.init_query'])
    assert run.returncode != 0 and 'KEY=VALUE' in run.stderr
