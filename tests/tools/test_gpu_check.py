"""tools/analysis_tools/gpu_check/: the CPU rehearsal of the GPU check, and its time boxes."""

import json
import os
import sys
import time

import gpu_check
import gpu_check_units
import pytest

from mmdet_detrdistill.testing import run_tool

pytestmark = pytest.mark.slow  # rehearses the GPU check on the CPU (every unit)

FAMILIES, METHODS = gpu_check_units.FAMILIES, gpu_check_units.METHODS
# CPU, 128 px, tiny configs, every part and family, each step run once
REHEARSAL = [
    '--skip-build',
    '--device',
    'cpu',
    '--configs',
    'tiny',
    '--size',
    '128',
    '--batch',
    '1',
]
REHEARSAL += ['--iters', '1', '--warmup', '0', '--probe-steps', '1', '--amp-steps', '1']
REHEARSAL += ['--worker-per', 'part']
# one CPU thread is slower than the GPU defaults' boxes assume
REHEARSAL += ['--box-bench', '300', '--box-amp', '200', '--box-resume', '300', '--budget', '1200']


def _table(markdown: str, heading: str) -> list:
    """The cells of each body row of the table under the ``## heading...`` line."""
    section = markdown.split(f'## {heading}')[1].split('\n## ')[0]
    rows = [ln for ln in section.splitlines() if ln.startswith('|')][2:]  # header, rule
    return [[c.strip() for c in row.strip('|').split('|')] for row in rows]


def test_cpu_rehearsal_writes_every_table_with_numbers(tmp_path):
    out = tmp_path / 'out'
    args = ['bash', 'tools/analysis_tools/gpu_check/gpu_check.sh', str(out), *REHEARSAL]
    # one thread: CPU results that do not depend on how busy the machine is (the resume check
    # compares weights bit for bit; a 2-thread run under load once differed by 4e-6)
    run = run_tool(args, env=dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1'))
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    markdown = (out / 'gpu_check.md').read_text()
    bench = _table(markdown, 'Cost of distillation')
    assert [(r[0], r[1]) for r in bench] == [(f, m) for f in FAMILIES for m in METHODS]
    for family, method, status, *cells in bench:
        student, teacher, distill, step, share, peak_s, peak_d, memory, no_opt, no_t = cells
        assert status == 'ok', (family, method, status)
        assert float(distill) > 0 and float(student) > 0 and float(teacher) > 0
        assert float(step) > 0 and float(memory) > 0 and float(no_opt) > 0
        assert 0 < float(peak_s) and 0 < float(peak_d)
        if method == 'oddetr':  # the EMA teacher's predictions are not matched
            assert share == '— (none)'
            assert no_t == '—'  # and it is no trained teacher whose weights could be left out
        else:
            assert 0 < float(share.rstrip('%')) < 100
            assert 0 < float(no_t) <= float(memory)
    amp = _table(markdown, 'Mixed precision')
    want = [(f, m, d) for f in FAMILIES for m in METHODS for d in ('float16', 'bfloat16')]
    assert [tuple(r[:3]) for r in amp] == want
    assert all(r[3] == 'ok' and r[5] == 'yes' and float(r[6]) > 0 for r in amp), amp
    (resume,) = _table(markdown, 'Exact resume')
    assert resume[2] == 'ok' and resume[6] == 'yes', resume  # losses and weights equal
    records = json.loads((out / 'results.json').read_text())['records']
    ratios = [r['ratios']['step'] for r in records if r['unit'] == 'bench']
    assert [f'{x:.2f}' for x in ratios] == [r[6] for r in bench]  # the table shows the records


def test_a_unit_over_its_box_is_killed_and_recorded(tmp_path):
    log = open(tmp_path / 'log', 'w')
    sleeper = [sys.executable, '-c', 'import time; time.sleep(60)']
    start = time.time()
    rc, wall = gpu_check.run_unit(sleeper, 2, log, 'cpu')
    assert rc is None and wall < 10 and time.time() - start < 10
    want = gpu_check.expected('amp', ['dab'])
    rows = gpu_check.collect(str(tmp_path / 'none.jsonl'), want, rc, wall, 2)
    assert len(rows) == len(METHODS) * 2
    assert all(r['status'].startswith('failed: timeout') for r in rows)


def test_records_written_before_a_crash_are_kept(tmp_path):
    results = str(tmp_path / 'r.jsonl')
    with gpu_check_units.recorded(results, dict(unit='bench', family='dab', method='d3etr')):
        pass
    with gpu_check_units.recorded(results, dict(unit='bench', family='dab', method='oddetr')):
        raise ValueError('boom')
    rows = gpu_check.collect(results, gpu_check.expected('bench', ['dab']), 1, 3.0, 60)
    assert [r['status'].split(':')[0] for r in rows] == ['ok', 'failed', 'failed']
    assert 'ValueError: boom' in rows[2]['status']  # the method's own error
    assert 'worker exited 1' in rows[1]['status']  # never written: the worker died first


def test_units_without_time_left_are_skipped_not_run(tmp_path):
    args = gpu_check.parse_args(['--out', str(tmp_path), '--deadline', str(time.time())])
    records = gpu_check.run_all(args)
    assert len(records) == len(FAMILIES) * len(METHODS) * 3 + 1
    assert {r['status'] for r in records} == {'skipped: no time left'}
