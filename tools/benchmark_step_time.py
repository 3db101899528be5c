"""Step-time cost of distillation, measured side by side in one run.

    python tools/benchmark_step_time.py CONFIG [--size 320] [--batch 2] [--iters 5]

Prints, as medians over ``--iters`` timed iterations (after one warm-up):
the student's own training step (forward + backward), the teacher's no-grad
forward, the distillation step (forward + backward), the ratio
distill / (student step + teacher forward), and the share of the distillation
step spent in teacher-student matching. Weights are random (no downloads);
timings do not depend on them.
"""

import argparse
import statistics
import time
from contextlib import contextmanager

import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules

import mmdet_detrdistill  # noqa: F401
from mmdet_detrdistill.testing import make_batch, smoke_model_cfg


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='a distiller config')
    parser.add_argument('--size', type=int, default=320, help='image side in pixels')
    parser.add_argument('--batch', type=int, default=2, help='images per step')
    parser.add_argument('--iters', type=int, default=5, help='timed iterations')
    parser.add_argument('--threads', type=int, default=None, help='torch CPU threads')
    return parser.parse_args()


def _time(fn, iters: int) -> float:
    fn()  # warm-up
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


@contextmanager
def _timed_matching(matcher, sink: list):
    """Time ``matcher.adaptive_match`` calls of this instance only."""
    original = matcher.adaptive_match

    def timed(*args, **kwargs):
        start = time.perf_counter()
        out = original(*args, **kwargs)
        sink.append(time.perf_counter() - start)
        return out

    matcher.adaptive_match = timed
    try:
        yield
    finally:
        del matcher.adaptive_match  # back to the class method


def main() -> None:
    args = parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    register_all_modules()
    distiller = MODELS.build(smoke_model_cfg(args.config))
    distiller.init_weights()
    distiller.train()
    student, teacher = distiller.student, distiller.teacher
    classes = student.bbox_head.num_classes
    shapes = [(3, args.size, args.size)] * args.batch
    batch = make_batch(distiller, args.batch, shapes, [5] * args.batch, classes)

    def student_step():
        losses = student(**batch, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()

    def teacher_forward():
        with torch.no_grad():
            teacher(**batch, mode='tensor')

    match_times: list = []

    def distill_step():
        losses = distiller(**batch, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()

    t_student = _time(student_step, args.iters)
    t_teacher = _time(teacher_forward, args.iters)
    with _timed_matching(distiller.matcher, match_times):
        t_distill = _time(distill_step, args.iters)
    per_step_match = sum(match_times) / (args.iters + 1)
    print(
        f'config: {args.config}\nimages: {args.batch} x {args.size}x{args.size}, '
        f'threads: {torch.get_num_threads()}, iters: {args.iters}'
    )
    print('| measure | seconds |\n|---|---|')
    print(
        f'| student train step | {t_student:.3f} |\n| teacher no-grad forward | {t_teacher:.3f} |'
    )
    print(f'| distill train step | {t_distill:.3f} |\n| matching per step | {per_step_match:.3f} |')
    print(
        f'ratio distill / (student step + teacher forward): '
        f'{t_distill / (t_student + t_teacher):.3f}'
    )
    print(f'matching share of the distill step: {per_step_match / t_distill:.1%}')


if __name__ == '__main__':
    main()
