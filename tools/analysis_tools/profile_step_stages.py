"""Where a distillation step's time goes: wall time of its stages, next to the student's step.

    python tools/analysis_tools/profile_step_stages.py CONFIG [--size 320] [--batch 2]
        [--iters 3] [--threads 1] [--seed 0] [--json OUT.json] [--cfg-options KEY=VALUE ...]

Builds the distiller of CONFIG with random weights (as ``benchmark_step_time.py`` does), runs
two untimed distill steps, then ``--iters`` rounds of: one distill step, one student step alone,
one teacher no-grad forward. During the distill steps the stages below are timed *inclusively*
(a stage's time contains the stages it calls), and the medians are printed as seconds and as a
share of the distill step, largest first::

    distiller.loss (forward)   everything before backward and the optimizer step
    decoder_outputs            teacher and student passes (backbone, transformer, head)
    teacher/student.transformer   ``forward_transformer_with_groups`` of each model
    teacher/student.extract_feat  backbone and neck
    student_gt_loss            the student's ground-truth losses (and what a method adds there,
                               e.g. OD-DETR's teacher_on_queries)
    component NAME.loss        each distillation component's losses
    solve_pairings             the teacher-student matchings the components asked for

What is left of the step after ``distiller.loss`` is backward and the optimizer. The step ratio
printed is the benchmark's (distill / (student + teacher)); the benchmark, which interleaves
the three and measures peak memory in fresh processes, is the reference for it. This tool is
for finding what to cut. CPU timings move 10-30% between runs: compare shares within one run.
"""

import argparse
import functools
import json
import statistics
import time
from collections import defaultdict
from typing import Callable, Dict, List

import torch
from mmdet.utils import register_all_modules

from mmdet_detrdistill.models.distillers import base_distiller
from mmdet_detrdistill.testing import step_time


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='distiller config')
    parser.add_argument('--size', type=int, default=320, help='image side in pixels')
    parser.add_argument('--batch', type=int, default=2, help='images per step')
    parser.add_argument('--iters', type=int, default=3, help='timed rounds')
    parser.add_argument('--threads', type=int, default=1, help='torch CPU threads')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random weights')
    parser.add_argument('--json', help='also write the medians (seconds) to this file')
    step_time.add_cfg_options_argument(parser)
    args = parser.parse_args()
    try:
        args.cfg_options = step_time.parse_cfg_options(args.cfg_option_items)
    except ValueError as error:
        parser.error(str(error))
    return args


class StageTimer:
    """Inclusive wall time per stage name, summed over the calls of one step."""

    def __init__(self) -> None:
        self.seconds: Dict[str, float] = defaultdict(float)
        self.active = False

    def wrap(self, owner: object, attr: str, stage: str) -> None:
        """Time calls of ``owner.attr`` (an instance or module attribute) as ``stage``."""
        inner: Callable = getattr(owner, attr)

        @functools.wraps(inner)
        def timed(*args, **kwargs):
            if not self.active:
                return inner(*args, **kwargs)
            start = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                self.seconds[stage] += time.perf_counter() - start

        setattr(owner, attr, timed)


def instrument(distiller: torch.nn.Module, timer: StageTimer) -> None:
    """Wrap the stages of the module docstring that this distiller has."""
    timer.wrap(distiller, 'loss', 'distiller.loss (forward)')
    timer.wrap(distiller, 'decoder_outputs', 'decoder_outputs')
    timer.wrap(distiller, 'student_gt_loss', 'student_gt_loss')
    if hasattr(distiller, 'teacher_on_queries'):
        timer.wrap(distiller, 'teacher_on_queries', 'teacher_on_queries')
    for role in ('teacher', 'student'):
        model = getattr(distiller, role)
        timer.wrap(model, 'forward_transformer_with_groups', f'{role}.transformer')
        timer.wrap(model, 'extract_feat', f'{role}.extract_feat')
    for name, component in distiller.components.items():
        timer.wrap(component, 'loss', f'component {name}.loss')
    timer.wrap(base_distiller, 'solve_pairings', 'solve_pairings')


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    register_all_modules()
    torch.manual_seed(args.seed)
    device = torch.device('cpu')
    options = args.cfg_options
    distiller = step_time.build_distiller(args.config, device, options)
    batch = step_time.step_batch(distiller, args)
    timer = StageTimer()
    instrument(distiller, timer)
    distill_step = step_time.train_step(
        distiller, batch, step_time.optim_wrapper_for(args.config, distiller, options)
    )
    student_step = step_time.train_step(
        distiller.student,
        batch,
        step_time.optim_wrapper_for(args.config, distiller.student, options),
    )

    def teacher_forward() -> None:
        with torch.no_grad():
            distiller.teacher(**batch, mode='tensor')

    for _ in range(2):  # warm-up
        distill_step()
        student_step()
        teacher_forward()
    stages: Dict[str, List[float]] = defaultdict(list)
    totals: Dict[str, List[float]] = defaultdict(list)
    for i in range(args.iters):
        timer.seconds.clear()
        for name, fn in (('distill', distill_step), ('student', student_step)):
            timer.active = name == 'distill'
            start = time.perf_counter()
            fn()
            totals[name].append(time.perf_counter() - start)
        timer.active = False
        start = time.perf_counter()
        teacher_forward()
        totals['teacher'].append(time.perf_counter() - start)
        for stage, seconds in timer.seconds.items():
            stages[stage].append(seconds)
        print(f'[profile] round {i + 1}/{args.iters}', flush=True)
    med = {k: statistics.median(v) for k, v in totals.items()}
    medians = {k: statistics.median(v) for k, v in stages.items()}
    ratio = med['distill'] / (med['student'] + med['teacher'])
    options = f' --cfg-options {" ".join(args.cfg_option_items)}' * bool(args.cfg_option_items)
    print(f'config: {args.config}{options}, {args.batch} x {args.size} px, threads {args.threads}')
    print(
        f'distill step {med["distill"]:.2f} s, student step {med["student"]:.2f} s, '
        f'teacher forward {med["teacher"]:.2f} s, ratio {ratio:.2f}\n'
    )
    print('| stage (inclusive) | s | share of the distill step |\n|---|---|---|')
    for stage, seconds in sorted(medians.items(), key=lambda kv: -kv[1]):
        print(f'| {stage} | {seconds:.2f} | {100 * seconds / med["distill"]:.1f}% |')
    if args.json:
        with open(args.json, 'w') as f:
            record = dict(config=args.config, cfg_options=args.cfg_option_items)
            json.dump(dict(record, steps=med, stages=medians), f, indent=1)


if __name__ == '__main__':
    main()
