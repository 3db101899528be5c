"""Cost of distillation: step time, matching share and peak memory, side by side in one run.

    python tools/analysis_tools/benchmark_step_time.py CONFIG [CONFIG ...] [--size 320]
        [--batch 2] [--iters 5] [--threads N] [--solver-threads N] [--device cpu|cuda]
        [--allocator keep|release] [--seed 0]

For each distiller config: the student's training step, the teacher's no-grad forward and the
distillation training step (medians over ``--iters`` after two warm-ups), the share of the
distill step spent in teacher-student matching, and the peak memory of each side, measured in
a fresh subprocess of its own (this script with ``--memory-probe``). Prints one table per
config and, with several, a summary table (one row per config) to stdout; nothing is written.

How it measures (what a step is, the ``--allocator`` choice, the memory probe):
docs/reports/2026-11-30_cost_benchmark_method.md. Results:
docs/reports/2026-11-30_training_cost_cpu.md.
"""

import argparse
import contextlib
import ctypes
import gc
import json
import os
import statistics
import subprocess
import sys
import time
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional

import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from mmengine.config import Config
from mmengine.optim import OptimWrapper, build_optim_wrapper

import mmdet_detrdistill  # noqa: F401
from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.models.task_modules.assignment_solver import (
    check_solver_threads,
    default_solver_threads,
)
from mmdet_detrdistill.testing import make_batch, smoke_model_cfg

PROBE_TAG = 'MEMORY_PROBE'
PROBE_STEPS = 2
PROBE_MMAP_THRESHOLD = 64 * 1024  # glibc: blocks this large are mmapped, unmapped on free
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters
WARMUP = 2  # untimed calls first: lazy state, and with --allocator keep the heap's growth


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
    parser.add_argument(
        '--memory-probe', choices=['student', 'distill'], help=argparse.SUPPRESS
    )  # internal: one side of the peak-memory measurement, in a fresh process
    return parser.parse_args()


def _sync(device: torch.device) -> None:
    """Wait for queued device work, so that wall time covers it."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)


def keep_freed_memory() -> bool:
    """glibc: serve every allocation from the heap and never give freed heap back to the OS
    (``mallopt(M_MMAP_MAX, 0)``, ``mallopt(M_TRIM_THRESHOLD, -1)``), so that memory freed
    in one step is reused by the next without page faults; False where that is not glibc."""
    try:
        libc = ctypes.CDLL('libc.so.6')
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(M_MMAP_MAX, 0)) and bool(mallopt(M_TRIM_THRESHOLD, -1))


def _time_interleaved(
    fns: Dict[str, Callable[[], None]], iters: int, device: torch.device
) -> Dict[str, float]:
    """Median wall time of each of ``fns`` over ``iters`` rounds, after ``WARMUP`` warm-up
    rounds; a round calls every fn once, in turn, so that a change of the machine's load during
    the run (other jobs, frequency) falls on all of them alike and their ratios hold."""
    for _ in range(WARMUP):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            _sync(device)
            start = time.perf_counter()
            fn()
            _sync(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@contextmanager
def _timed_matching(sink: list, device: torch.device):
    """Time every ``MixMatcher.adaptive_match_layers`` call (whichever component owns the
    matcher; ``adaptive_match`` goes through it too)."""
    original = MixMatcher.adaptive_match_layers

    def timed(*args, **kwargs):
        _sync(device)  # the forward's queued kernels are not matching time
        start = time.perf_counter()
        out = original(*args, **kwargs)
        _sync(device)
        sink.append(time.perf_counter() - start)
        return out

    MixMatcher.adaptive_match_layers = timed
    try:
        yield
    finally:
        MixMatcher.adaptive_match_layers = original


def matchers(model: torch.nn.Module) -> List[MixMatcher]:
    """Every ``MixMatcher`` held by a submodule of ``model`` (as its ``matcher``)."""
    found = (getattr(m, 'matcher', None) for m in model.modules())
    return [m for m in found if isinstance(m, MixMatcher)]


def solver_threads(model: torch.nn.Module, threads: Optional[int]) -> Optional[int]:
    """Set every matcher's ``solver_threads`` to ``threads`` (None: keep the configs'); return
    the number in use (None when the model has no matcher)."""
    found = matchers(model)
    for m in found:
        if threads is not None:
            m.solver_threads = threads
    used = {m.solver_threads or default_solver_threads() for m in found}
    return max(used) if used else None


def build_distiller(config: str, device: torch.device) -> torch.nn.Module:
    """The config's distiller (random weights, untrained teacher), in train mode."""
    distiller = MODELS.build(smoke_model_cfg(config))
    distiller.init_weights()
    return distiller.to(device).train()


def build_student_alone(config: str, device: torch.device) -> torch.nn.Module:
    """The config's student as the plain mmdet detector, without any teacher."""
    student = MODELS.build(smoke_model_cfg(config).student)
    student.init_weights()
    return student.to(device).train()


def optim_wrapper_for(config: str, model: torch.nn.Module) -> OptimWrapper:
    """The config's ``optim_wrapper`` (optimizer, clipping, paramwise settings) for ``model``,
    built as mmengine's Runner builds it."""
    cfg = Config.fromfile(config)
    if 'optim_wrapper' not in cfg:
        raise KeyError(f'{config} has no optim_wrapper: a training step needs one')
    return build_optim_wrapper(model, cfg.optim_wrapper)


def train_step(
    model: torch.nn.Module, batch: Dict, optim_wrapper: Optional[OptimWrapper] = None
) -> Callable[[], None]:
    """One training step of ``model`` on ``batch``, as a closure: the forward, then
    ``optim_wrapper.update_params`` as in mmengine's ``train_step``; without an optimizer
    wrapper, the forward and the backward only."""

    def step() -> None:
        losses = model(**batch, mode='loss')
        loss, _ = model.parse_losses(losses)
        if optim_wrapper is None:
            loss.backward()
        else:
            optim_wrapper.update_params(loss)

    return step


def _batch(model: torch.nn.Module, args: argparse.Namespace) -> Dict:
    """The benchmark batch: ``--batch`` random images of ``--size``, five boxes each."""
    student = getattr(model, 'student', model)
    classes = student.bbox_head.num_classes
    shapes = [(3, args.size, args.size)] * args.batch
    return make_batch(model, args.batch, shapes, [5] * args.batch, classes)


def _proc_status_bytes(field: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (``VmRSS``, ``VmHWM``), in bytes."""
    with open('/proc/self/status') as f:
        line = next(ln for ln in f if ln.startswith(f'{field}:'))
    return int(line.split()[1]) * 1024


def _reset_peak_rss() -> int:
    """Return freed heap to the OS, reset the kernel's RSS high-water mark to the current
    RSS (Linux >= 4.0: ``/proc/self/clear_refs``), and return that RSS in bytes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL('libc.so.6').malloc_trim(0)  # glibc: unused heap back to the OS
    with open('/proc/self/clear_refs', 'w') as f:
        f.write('5')
    return _proc_status_bytes('VmRSS')


def _probe_steps(
    args: argparse.Namespace, device: torch.device, steps: int, peak: Callable[[], int]
) -> Dict[str, int]:
    """Build the probed side; run ``steps`` forward + backward passes and read ``peak()``, then
    ``steps`` training steps and read it again; let it all go."""
    build = build_distiller if args.memory_probe == 'distill' else build_student_alone
    torch.manual_seed(args.seed)
    model = build(args.config, device)
    batch = _batch(model, args)
    peaks = {}
    for name, optim_wrapper in (
        ('no_optimizer', None),
        ('train', optim_wrapper_for(args.config, model)),
    ):
        step = train_step(model, batch, optim_wrapper)
        for _ in range(steps):
            step()
        _sync(device)
        peaks[name] = peak()
    return peaks


def memory_probe(
    args: argparse.Namespace, device: torch.device, warmup: bool = True
) -> Optional[Dict[str, int]]:
    """Peak memory of one side, in bytes, over ``PROBE_STEPS`` passes without the optimizer
    (``no_optimizer``) and then as well over ``PROBE_STEPS`` training steps (``train``), see
    the docstring; None on a CPU without Linux's ``/proc/self/clear_refs``. ``warmup=False``
    skips the first, unmeasured step, for a process that already ran the same code."""
    if device.type != 'cuda' and not os.path.exists('/proc/self/clear_refs'):
        return None
    if warmup:
        _probe_steps(args, device, 1, lambda: 0)  # code paths run once (pages in code, threads)
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        return _probe_steps(
            args, device, PROBE_STEPS, lambda: torch.cuda.max_memory_allocated(device) - start
        )
    start = _reset_peak_rss()
    return _probe_steps(args, device, PROBE_STEPS, lambda: _proc_status_bytes('VmHWM') - start)


def measure_peak_memory(args: argparse.Namespace, side: str) -> Optional[Dict[str, int]]:
    """Run ``memory_probe`` for ``side`` in a fresh subprocess; its peaks in bytes."""
    cmd = [sys.executable, __file__, args.config, '--memory-probe', side]
    cmd += ['--size', str(args.size), '--batch', str(args.batch), '--device', args.device]
    cmd += ['--seed', str(args.seed)]
    if args.threads:
        cmd += ['--threads', str(args.threads)]
    env = dict(os.environ)
    env.setdefault('MALLOC_MMAP_THRESHOLD_', str(PROBE_MMAP_THRESHOLD))
    run = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in run.stdout.splitlines() if ln.startswith(PROBE_TAG)]
    if run.returncode != 0 or not lines:
        raise RuntimeError(f'memory probe ({side}) failed:\n{run.stdout}\n{run.stderr}')
    return json.loads(lines[-1][len(PROBE_TAG) :])['peaks']


def measure_times(args: argparse.Namespace, device: torch.device) -> Dict[str, float]:
    """Student step, teacher forward, distill step and matching per step, in seconds."""
    torch.manual_seed(args.seed)
    distiller = build_distiller(args.config, device)
    student, teacher = distiller.student, distiller.teacher
    batch = _batch(distiller, args)
    args.solver_threads_used = solver_threads(distiller, args.solver_threads)

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(**batch, mode='tensor')

    match_times: List[float] = []
    student_step = train_step(student, batch, optim_wrapper_for(args.config, student))
    distill_step = train_step(distiller, batch, optim_wrapper_for(args.config, distiller))

    def timed_distill_step() -> None:
        with _timed_matching(match_times, device):  # only the distill step's matchings count
            distill_step()

    # interleaved: the three are timed in turn, round after round (see _time_interleaved)
    times = _time_interleaved(
        dict(student=student_step, teacher=teacher_forward, distill=timed_distill_step),
        args.iters,
        device,
    )
    times['matching'] = sum(match_times) / (args.iters + WARMUP)
    times['matching_calls'] = len(match_times)  # 0: the method matches no teacher to student
    return times


Peaks = Dict[str, Optional[Dict[str, int]]]  # side -> {'train': bytes, 'no_optimizer': bytes}


def ratios(times: Dict[str, float], memory: Peaks) -> Dict[str, Optional[float]]:
    """Step ratio, matching share and memory ratios (training step; without the optimizer);
    None for a matching share of a method without teacher-student matching, and for memory
    that was not measured."""
    student, distill = memory['student'], memory['distill']
    measured = bool(student) and bool(distill)
    return dict(
        step=times['distill'] / (times['student'] + times['teacher']),
        matching=times['matching'] / times['distill'] if times['matching_calls'] else None,
        memory=distill['train'] / student['train'] if measured else None,
        memory_no_optimizer=(
            distill['no_optimizer'] / student['no_optimizer'] if measured else None
        ),
    )


def _share(r: Dict) -> str:
    """The matching share, or a dash for a method without teacher-student matching."""
    return '— (none)' if r['matching'] is None else f'{r["matching"]:.1%}'


def summary_row(args: argparse.Namespace, times: Dict[str, float], r: Dict) -> str:
    """One row of the summary table (the README's columns)."""
    memory, no_opt = (
        'n/a' if r[key] is None else f'{r[key]:.2f}' for key in ('memory', 'memory_no_optimizer')
    )
    return (
        f'| `{args.config}` | {args.batch} x {args.size} px | {times["student"]:.3f} '
        f'| {times["teacher"]:.3f} | {times["distill"]:.3f} | {r["step"]:.2f} '
        f'| {_share(r)} | {memory} | {no_opt} |'
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
    return r


SUMMARY_HEADER = (
    '| config | images | student step (s) | teacher fwd (s) | distill step (s) | step ratio '
    '| matching | memory ratio | memory ratio, no optimizer |\n' + '|---' * 9 + '|'
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
        print(
            f'\nsummary (threads: {torch.get_num_threads()}, solver threads: {solver}, '
            f'device: {args.device}, allocator: {args.allocator_used})'
        )
        print('\n'.join([SUMMARY_HEADER, *rows]))


if __name__ == '__main__':
    main()
