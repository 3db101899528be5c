"""Cost of distillation, measured in one process: step times, matching share, peak memory.

Shared by ``tools/analysis_tools/benchmark_step_time.py`` (which runs each memory probe in a
fresh process of its own) and the GPU check (``tools/analysis_tools/gpu_check/``). A *step* is
one training step as mmengine's ``train_step`` runs it, with the config's optimizer wrapper;
the three sides (student step, teacher no-grad forward, distill step) are timed interleaved.
How it measures: docs/reports/2026-11-30_cost_benchmark_method.md.
"""

import argparse
import contextlib
import ctypes
import gc
import os
import statistics
import time
from contextlib import contextmanager
from typing import Callable, Dict, List, Optional

import torch
from mmdet.registry import MODELS
from mmengine.config import DictAction
from mmengine.optim import OptimWrapper, build_optim_wrapper

from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.models.task_modules.assignment_solver import default_solver_threads

from .config_smoke import load_config, smoke_model_cfg
from .tiny_models import make_batch

PROBE_STEPS = 2  # steps per memory probe phase
M_TRIM_THRESHOLD, M_MMAP_MAX = -1, -4  # glibc mallopt parameters
WARMUP = 2  # untimed calls first: lazy state, and with the heap kept, the heap's growth


def add_cfg_options_argument(parser: argparse.ArgumentParser) -> None:
    """``--cfg-options KEY=VALUE ...`` as mmdet's tools take it, merged into every config; the
    tool reads the dict from :func:`parse_cfg_options` and can pass the items on as given."""
    parser.add_argument(
        '--cfg-options',
        dest='cfg_option_items',
        nargs='+',
        default=[],
        metavar='KEY=VALUE',
        help="override settings of every config, as in mmdet's tools (e.g. model.init_query=None)",
    )


def parse_cfg_options(items: List[str]) -> Dict:
    """``['model.init_query=None', 'a.b=[1,2]']`` -> ``{'model.init_query': None, 'a.b': [1, 2]}``,
    values parsed as mmengine's ``DictAction`` parses them."""
    options = {}
    for item in items:
        key, sep, value = item.partition('=')
        if not sep or not key:
            raise ValueError(f'--cfg-options takes KEY=VALUE items; got {item!r}')
        options[key] = DictAction._parse_iterable(value)
    return options


def synchronize(device: torch.device) -> None:
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


def time_interleaved(
    fns: Dict[str, Callable[[], None]], iters: int, device: torch.device, warmup: int = WARMUP
) -> Dict[str, float]:
    """Median wall time of each of ``fns`` over ``iters`` rounds, after ``warmup`` warm-up
    rounds; a round calls every fn once, in turn, so that a change of the machine's load during
    the run (other jobs, frequency) falls on all of them alike and their ratios hold."""
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    times: Dict[str, List[float]] = {name: [] for name in fns}
    for _ in range(iters):
        for name, fn in fns.items():
            synchronize(device)
            start = time.perf_counter()
            fn()
            synchronize(device)
            times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}


@contextmanager
def _timed_matching(sink: list, device: torch.device):
    """Time every ``MixMatcher.adaptive_match_layers`` call (whichever component owns the
    matcher; ``adaptive_match`` goes through it too)."""
    original = MixMatcher.adaptive_match_layers

    def timed(*args, **kwargs):
        synchronize(device)  # the forward's queued kernels are not matching time
        start = time.perf_counter()
        out = original(*args, **kwargs)
        synchronize(device)
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


def build_distiller(
    config: str, device: torch.device, cfg_options: Optional[Dict] = None
) -> torch.nn.Module:
    """The config's distiller (random weights, untrained teacher), in train mode."""
    distiller = MODELS.build(smoke_model_cfg(config, cfg_options))
    distiller.init_weights()
    return distiller.to(device).train()


def build_student_alone(
    config: str, device: torch.device, cfg_options: Optional[Dict] = None
) -> torch.nn.Module:
    """The config's student as the plain mmdet detector, without any teacher."""
    student = MODELS.build(smoke_model_cfg(config, cfg_options).student)
    student.init_weights()
    return student.to(device).train()


def optim_wrapper_for(
    config: str, model: torch.nn.Module, cfg_options: Optional[Dict] = None
) -> OptimWrapper:
    """The config's ``optim_wrapper`` (optimizer, clipping, paramwise settings) for ``model``,
    built as mmengine's Runner builds it."""
    cfg = load_config(config, cfg_options)
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


def step_batch(model: torch.nn.Module, args: argparse.Namespace) -> Dict:
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
    options = getattr(args, 'cfg_options', None)
    torch.manual_seed(args.seed)
    model = build(args.config, device, options)
    batch = step_batch(model, args)
    peaks = {}
    for name, optim_wrapper in (
        ('no_optimizer', None),
        ('train', optim_wrapper_for(args.config, model, options)),
    ):
        step = train_step(model, batch, optim_wrapper)
        for _ in range(steps):
            step()
        synchronize(device)
        peaks[name] = peak()
    if args.memory_probe == 'distill':
        peaks['teacher_weights'] = external_teacher_bytes(model)
    return peaks


def external_teacher_bytes(distiller: torch.nn.Module) -> int:
    """Bytes of a trained teacher's parameters and buffers: a fixed cost the user chose with
    the teacher (Swin-L: 0.81 GiB). 0 for a teacher that is part of the method (OD-DETR's EMA
    of the student, ``_teacher_in_module_tree``)."""
    if getattr(distiller, '_teacher_in_module_tree', False):
        return 0
    tensors = [*distiller.teacher.parameters(), *distiller.teacher.buffers()]
    return sum(t.numel() * t.element_size() for t in tensors)


def memory_probe(
    args: argparse.Namespace,
    device: torch.device,
    warmup: bool = True,
    steps: int = PROBE_STEPS,
) -> Optional[Dict[str, int]]:
    """Peak memory of the side ``args.memory_probe`` (``'student'`` alone or ``'distill'``),
    in bytes, over ``steps`` passes without the optimizer (``no_optimizer``) and then as well
    over ``steps`` training steps (``train``): on CUDA, ``max_memory_allocated`` above the live
    tensors; on the CPU, the rise of the RSS high-water mark; None on a CPU without Linux's
    ``/proc/self/clear_refs``. ``warmup=False`` skips the first, unmeasured step, for a process
    that already ran the same code."""
    if device.type != 'cuda' and not os.path.exists('/proc/self/clear_refs'):
        return None
    if warmup:
        _probe_steps(args, device, 1, lambda: 0)  # code paths run once (pages in code, threads)
    gc.collect()
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats(device)
        start = torch.cuda.memory_allocated(device)
        return _probe_steps(
            args, device, steps, lambda: torch.cuda.max_memory_allocated(device) - start
        )
    start = _reset_peak_rss()
    return _probe_steps(args, device, steps, lambda: _proc_status_bytes('VmHWM') - start)


def measure_times(
    args: argparse.Namespace, device: torch.device, warmup: int = WARMUP
) -> Dict[str, float]:
    """Student step, teacher forward, distill step and matching per step, in seconds: medians
    over ``args.iters`` interleaved rounds after ``warmup`` untimed ones.

    Args:
        args: ``config``, ``size``, ``batch`` (random images of ``size`` px, five boxes each),
            ``iters``, ``seed`` (of the random weights), ``solver_threads`` (None: the
            config's) and optionally ``cfg_options`` (merged into the config);
            ``solver_threads_used`` is set on it.
        device: where the models run.
        warmup: untimed rounds first. Defaults to ``WARMUP``.
    """
    options = getattr(args, 'cfg_options', None)
    torch.manual_seed(args.seed)
    distiller = build_distiller(args.config, device, options)
    student, teacher = distiller.student, distiller.teacher
    batch = step_batch(distiller, args)
    args.solver_threads_used = solver_threads(distiller, args.solver_threads)

    def teacher_forward() -> None:
        with torch.no_grad():
            teacher(**batch, mode='tensor')

    match_times: List[float] = []
    student_step = train_step(student, batch, optim_wrapper_for(args.config, student, options))
    distill_step = train_step(distiller, batch, optim_wrapper_for(args.config, distiller, options))

    def timed_distill_step() -> None:
        with _timed_matching(match_times, device):  # only the distill step's matchings count
            distill_step()

    # interleaved: the three are timed in turn, round after round (see time_interleaved)
    times = time_interleaved(
        dict(student=student_step, teacher=teacher_forward, distill=timed_distill_step),
        args.iters,
        device,
        warmup,
    )
    times['matching'] = sum(match_times) / (args.iters + warmup)
    times['matching_calls'] = len(match_times)  # 0: the method matches no teacher to student
    return times


# side -> {'train': bytes, 'no_optimizer': bytes}; the distill side also 'teacher_weights'
Peaks = Dict[str, Optional[Dict[str, int]]]


def ratios(times: Dict[str, float], memory: Peaks) -> Dict[str, Optional[float]]:
    """Step ratio, matching share and memory ratios (training step; without the optimizer;
    without a trained teacher's weights); None for a matching share of a method without
    teacher-student matching, for memory that was not measured, and for the last ratio of a
    method without a trained teacher (OD-DETR)."""
    student, distill = memory['student'], memory['distill']
    measured = bool(student) and bool(distill)
    teacher_weights = distill.get('teacher_weights', 0) if measured else 0
    return dict(
        step=times['distill'] / (times['student'] + times['teacher']),
        matching=times['matching'] / times['distill'] if times['matching_calls'] else None,
        memory=distill['train'] / student['train'] if measured else None,
        memory_no_optimizer=(
            distill['no_optimizer'] / student['no_optimizer'] if measured else None
        ),
        # the training step's ratio less the trained teacher's weights (None: no such teacher)
        memory_no_teacher_weights=(
            (distill['train'] - teacher_weights) / student['train'] if teacher_weights else None
        ),
    )
