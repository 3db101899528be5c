"""The embedded default: does distillation pay on a small problem you can run on a CPU?

    python tools/run_demo.py [--family {conditional,dab,deformable,dino}]
                             [--method {d3etr,detrdistill,oddetr} ...] [--work-dir DIR]
                             [--quick] [--seed 0] [--skip-distill]

1. generates a deterministic COCO-format dataset of procedural shapes (data/synth_coco);
2. trains a tiny teacher of the chosen family (default: Conditional DETR);
3. trains the tiny student alone (baseline) and with each chosen method (default D3ETR) from
   that teacher, on the same schedule and seed;
4. prints teacher / baseline / distilled COCO box AP (mmdet's CocoMetric) as a table, also
   saved as WORK_DIR/results.md and results.json.

Each stage runs ``tools/train.py`` in a subprocess (full log: WORK_DIR/<stage>.log); a finished
stage with the same settings and the same config content is reused. ``--quick`` is a smoke run
(tiny data, a few iterations). The configs, schedules and stages are
``mmdet_detrdistill.testing.demo_runs``, shared with the studies in ``tools/analysis_tools/``.
"""

import argparse
import json
import os
import os.path as osp
import time

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import REPO_ROOT
from mmdet_detrdistill.testing.demo_runs import (
    FAMILIES,
    METHODS,
    SCALES,
    Stage,
    results_table,
    run_stage,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--family',
        choices=sorted(FAMILIES),
        default='conditional',
        help='detector family of teacher and student',
    )
    parser.add_argument(
        '--work-dir',
        help='where runs are written (default: work_dirs/demo, or '
        'work_dirs/demo_FAMILY for another family)',
    )
    parser.add_argument('--data-root', default='data/synth_coco', help='generated dataset')
    parser.add_argument('--quick', action='store_true', help='smoke run: tiny data and schedule')
    parser.add_argument('--seed', type=int, default=0, help='training seed of every stage')
    parser.add_argument(
        '--method',
        nargs='+',
        choices=sorted(METHODS),
        default=['d3etr'],
        help='distillation method(s) to run after teacher and baseline (default: d3etr)',
    )
    parser.add_argument('--skip-distill', action='store_true', help='teacher and baseline only')
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    num_train, num_val, t_iters, s_iters = SCALES['quick' if args.quick else 'full']
    teacher_cfg, student_cfg = FAMILIES[args.family]
    if args.work_dir is None:
        suffix = '' if args.family == 'conditional' else f'_{args.family}'
        args.work_dir = f'work_dirs/demo{suffix}'
    os.chdir(REPO_ROOT)
    data_root = args.data_root + ('_quick' if args.quick else '')
    make_synthetic_coco(data_root, num_train, num_val, img_size=128, seed=0)
    start = time.time()
    records = {}
    teacher = run_stage(
        Stage('teacher', teacher_cfg, t_iters, []), args.work_dir, args.seed, data_root
    )
    records['teacher'] = teacher
    records['baseline student'] = run_stage(
        Stage('baseline', student_cfg, s_iters, []), args.work_dir, args.seed, data_root
    )
    for method in [] if args.skip_distill else args.method:
        row, needs_teacher, configs = METHODS[method]
        extra = [f'model.teacher_ckpt={teacher["checkpoint"]}'] if needs_teacher else []
        stage = Stage(method, configs[args.family], s_iters, extra)
        records[row] = run_stage(stage, args.work_dir, args.seed, data_root)
    table = results_table(records)
    note = (
        f'Generated data `{data_root}` ({num_train} train / {num_val} val images, 128 px), '
        f'seed {args.seed}; COCO box AP (%) on the val split. Train times are wall times '
        'of each stage (with its OMP_NUM_THREADS where one was set).'
    )
    print(f'\n{note}\n\n{table}\n\ntotal: {(time.time() - start) / 60:.1f} min')
    os.makedirs(args.work_dir, exist_ok=True)
    with open(osp.join(args.work_dir, 'results.md'), 'w') as f:
        f.write(f'{note}\n\n{table}\n')
    with open(osp.join(args.work_dir, 'results.json'), 'w') as f:
        json.dump(records, f, indent=2)


if __name__ == '__main__':
    main()
