"""Cost of distillation: step time, matching share and peak memory, side by side in one run.

    python tools/analysis_tools/benchmark_step_time.py CONFIG [CONFIG ...] [--size 320]
        [--batch 2] [--iters 5] [--threads N] [--solver-threads N] [--device cpu|cuda]
        [--allocator keep|release] [--seed 0] [--cfg-options KEY=VALUE ...]

For each distiller config: the student's training step, the teacher's no-grad forward and the
distillation training step (medians over ``--iters`` after two warm-ups), the share of the
distill step spent in teacher-student matching, and the peak memory of each side, measured in
a fresh subprocess of its own (this script with ``--memory-probe``). Prints one table per
config and, with several, a summary table (one row per config) to stdout; nothing is written.

The measurements are ``mmdet_detrdistill.testing.step_time``'s (the GPU check's too). How it
measures (what a step is, the ``--allocator`` choice, the memory probe):
docs/reports/2026-11-30_cost_benchmark_method.md. Results:
docs/reports/2026-11-30_training_cost_cpu.md.
"""

import argparse
import json
import os
import subprocess
import sys
from typing import Dict, Optional

import torch
from mmdet.utils import register_all_modules

from mmdet_detrdistill.models.task_modules.assignment_solver import (
    check_solver_threads,
    default_solver_threads,
)
from mmdet_detrdistill.testing.step_time import (
    Peaks,
    add_cfg_options_argument,
    keep_freed_memory,
    measure_times,
    memory_probe,
    parse_cfg_options,
    ratios,
)

PROBE_TAG = 'MEMORY_PROBE'
PROBE_MMAP_THRESHOLD = 64 * 1024  # glibc: blocks this large are mmapped, unmapped on free


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('configs', nargs='+', metavar='CONFIG', help='distiller configs')
    parser.add_argument('--size', type=int, default=320, help='image side in pixels')
    parser.add_argument('--batch', type=int, default=2, help='images per step')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    parser.add_argument(
        '--solver-threads',
        type=int,
        default=None,
        help="Hungarian solves at once (default: the matcher's, this process's share of the CPUs)",
    )
    parser.add_argument(
        '--seed',
        type=int,
        default=0,
        help='seed of the random weights (matching time depends on them)',
    )
    parser.add_argument(
        '--device',
        default='cuda' if torch.cuda.is_available() else 'cpu',
        help='cpu or cuda (default: cuda when available)',
    )
    parser.add_argument(
        '--allocator',
        choices=['keep', 'release'],
        default='keep',
        help='CPU timing: keep freed memory in the process for reuse (default), or release it '
        "to the OS as glibc does by default (see the docstring's *Allocator*)",
    )
    add_cfg_options_argument(parser)
    parser.add_argument(
        '--memory-probe', choices=['student', 'distill'], help=argparse.SUPPRESS
    )  # internal: one side of the peak-memory measurement, in a fresh process
    args = parser.parse_args()
    try:
        args.cfg_options = parse_cfg_options(args.cfg_option_items)
    except ValueError as error:
        parser.error(str(error))
    return args


def measure_peak_memory(args: argparse.Namespace, side: str) -> Optional[Dict[str, int]]:
    """Run ``memory_probe`` for ``side`` in a fresh subprocess; its peaks in bytes."""
    cmd = [sys.executable, __file__, args.config, '--memory-probe', side]
    cmd += ['--size', str(args.size), '--batch', str(args.batch), '--device', args.device]
    cmd += ['--seed', str(args.seed)]
    if args.cfg_option_items:
        cmd += ['--cfg-options', *args.cfg_option_items]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    env = dict(os.environ)
    env.setdefault('MALLOC_MMAP_THRESHOLD_', str(PROBE_MMAP_THRESHOLD))
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith(PROBE_TAG)]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f'memory probe ({side}) failed:\n{run.stdout}\n{run.stderr}')
    return json.loads(lines[-1][len(PROBE_TAG) :])['peaks']


def _share(r: Dict) -> str:
    """The matching share, or a dash for a method without teacher-student matching."""
    return '— (none)' if r['matching'] is None else f'{r["matching"]:.1%}'


def summary_row(args: argparse.Namespace, times: Dict[str, float], r: Dict) -> str:
    """One row of the summary table (the README's columns)."""
    memory, no_opt, no_teacher = (
        'n/a' if r[key] is None else f'{r[key]:.2f}'
        for key in ('memory', 'memory_no_optimizer', 'memory_no_teacher_weights')
    )
    return (
        f'| `{args.config}` | {args.batch} x {args.size} px | {times["student"]:.3f} '
        f'| {times["teacher"]:.3f} | {times["distill"]:.3f} | {r["step"]:.2f} '
        f'| {_share(r)} | {memory} | {no_opt} | {no_teacher} |'
    )


def report(args: argparse.Namespace, times: Dict[str, float], memory: Peaks) -> Dict:
    """Print the measurements as a markdown table and the ratios; return the ratios."""

    def mib(side: str, key: str = 'train') -> str:
        return 'n/a' if memory[side] is None else f'{memory[side][key] / 2.0**20:.1f} MiB'

    print(
        f'config: {args.config}\nimages: {args.batch} x {args.size}x{args.size}, '
        f'device: {args.device}, threads: {torch.get_num_threads()}, '
        f'solver threads: {args.solver_threads_used or "n/a"}, iters: {args.iters}, '
        f'seed: {args.seed}, allocator: {args.allocator_used}'
    )
    print('| measure | value |\n|---|---|')
    print(f'| student train step | {times["student"]:.3f} s |')
    print(f'| teacher no-grad forward | {times["teacher"]:.3f} s |')
    print(f'| distill train step | {times["distill"]:.3f} s |')
    print(f'| matching per step | {times["matching"]:.3f} s |')
    print(f'| peak memory, student step alone | {mib("student")} |')
    print(f'| peak memory, distill step | {mib("distill")} |')
    print(
        f'| peak memory without the optimizer, student alone | {mib("student", "no_optimizer")} |'
    )
    print(f'| peak memory without the optimizer, distill | {mib("distill", "no_optimizer")} |')
    r = ratios(times, memory)
    print(f'ratio distill / (student step + teacher forward): {r["step"]:.3f}')
    print(f'matching share of the distill step: {_share(r)}')
    unmeasured = 'n/a (CPU peak memory needs Linux /proc/self/clear_refs)'
    for key, what in (('memory', ''), ('memory_no_optimizer', ', without the optimizer')):
        value = unmeasured if r[key] is None else f'{r[key]:.3f}'
        print(f'peak memory ratio distill step / student step alone{what}: {value}')
    if r['memory_no_teacher_weights'] is not None:
        weights = memory['distill']['teacher_weights'] / 2.0**20
        print(
            f"peak memory ratio without the teacher's weights ({weights:.1f} MiB): "
            f'{r["memory_no_teacher_weights"]:.3f}'
        )
    return r


SUMMARY_HEADER = (
    '| config | images | student step (s) | teacher fwd (s) | distill step (s) | step ratio '
    '| matching | memory ratio | memory ratio, no optimizer | memory ratio, no teacher weights '
    '|\n' + '|---' * 10 + '|'
)


def main() -> None:
    args = parse_args()
    check_solver_threads(args.solver_threads, '--solver-threads')
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules()
    device = torch.device(args.device)
    if args.memory_probe:
        args.config = args.configs[0]
        print(f'{PROBE_TAG} {json.dumps(dict(peaks=memory_probe(args, device)))}')
        return
    args.allocator_used = 'CUDA caching allocator' if device.type == 'cuda' else 'release'
    if device.type == 'cpu' and args.allocator == 'keep':
        args.allocator_used = 'keep' if keep_freed_memory() else 'release (not glibc)'
    rows = []
    for i, config in enumerate(args.configs):
        if len(args.configs) > 1:
            print(f'\n[{i + 1}/{len(args.configs)}] {config}', flush=True)
        args.config = config
        times = measure_times(args, device)
        memory = {side: measure_peak_memory(args, side) for side in ('student', 'distill')}
        rows.append(summary_row(args, times, report(args, times, memory)))
    if len(rows) > 1:
        solver = args.solver_threads or f"the matchers' own ({default_solver_threads()} by default)"
        options = f', cfg-options: {" ".join(args.cfg_option_items)}' * bool(args.cfg_options)
        print(
            f'\nsummary (threads: {torch.get_num_threads()}, solver threads: {solver}, '
            f'device: {args.device}, allocator: {args.allocator_used}{options})'
        )
        print('\n'.join([SUMMARY_HEADER, *rows]))


if __name__ == '__main__':
    main()
