"""tools/benchmark_step_time.py reports step times, matching share and peak memory."""

import re

from mmdet_detrdistill.testing import run_tool

CONFIG = 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'


def _value(pattern: str, text: str) -> float:
    match = re.search(pattern, text)
    assert match, f'{pattern!r} not in:\n{text}'
    return float(match.group(1))


def test_benchmark_reports_time_matching_and_memory():
    args = ['tools/benchmark_step_time.py', CONFIG, '--size', '64', '--batch', '2', '--iters', '1']
    run = run_tool(args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    out = run.stdout
    assert _value(r'matching per step \| ([\d.]+) s', out) > 0  # adaptive_match was timed
    student = _value(r'peak memory, student step alone \| ([\d.]+) MiB', out)
    distill = _value(r'peak memory, distill step \| ([\d.]+) MiB', out)
    assert 0 < student < distill  # the distiller holds the teacher too
    ratio = _value(r'peak memory ratio distill step / student step alone: ([\d.]+)', out)
    assert abs(ratio - distill / student) < 0.01
    assert _value(r'ratio distill / \(student step \+ teacher forward\): ([\d.]+)', out) > 0
