"""Accuracy study: does distillation pay? Teacher, baseline and distilled students, several seeds.

    python tools/analysis_tools/benchmark_accuracy.py [--families conditional]
        [--methods d3etr detrdistill oddetr] [--seeds 0 1 2] [--work-dir work_dirs/accuracy]
        [--variant METHOD LABEL KEY=VALUE [KEY=VALUE ...]] [--dataset shapes|clutter] [--quick]

On a generated dataset (``--dataset``: the embedded default's shapes, or the harder cluttered
scenes of ``mmdet_detrdistill/datasets/clutter_scene.py``), for each family: one teacher (seed 0,
as in ``tools/run_demo.py``, whose finished stages are reused on the shapes: both train through
``mmdet_detrdistill.testing.demo_runs``; on other data it is trained in
``work_dirs/demo[_FAMILY]_DATASET``), then for every seed the student alone and with each
method, all on the same schedule. Every run is evaluated with mmdet's CocoMetric
at four points of its schedule; the *short* schedule is the evaluation at half the iterations
(before the learning-rate step at 80%), the *long* one the end of the run. ``--variant`` adds a
row: METHOD's config with config options, e.g. ``--variant d3etr top10
model.matcher.teacher_topk=10`` (``--methods`` with no name: the baseline and variants only).
Finished runs are reused; seeds, or methods with ``--skip-baseline``, can run as parallel
processes, and a last call with all of them only collects. A call none of whose students needs
the teacher (the baseline, OD-DETR) does not train it, so it can run while another call does.
Writes to WORK_DIR:

* ``accuracy.md``: mean and spread (sample std over seeds) of COCO AP / AP50 / AP75 / AP_s /
  AP_m / AP_l per family x method x schedule, with the teacher's AP and, for OD-DETR, the AP
  of its EMA model;
* ``accuracy_FAMILY.png``: AP against iterations, baseline vs each method (mean, min-max band);
* ``accuracy.json``: every evaluation of every run.

Results: docs/reports/2026-11-30_accuracy_cpu.md (*Accuracy study*), tables and plots in
docs/results/accuracy*.
"""

import argparse
import json
import os
import os.path as osp
import re
import statistics
from typing import Dict, List, Optional

from mmdet_detrdistill.testing import REPO_ROOT
from mmdet_detrdistill.testing.demo_runs import (
    FAMILIES,
    METHODS,
    PAIRINGS,
    SCALES,
    Stage,
    add_dataset_arguments,
    coco_metrics,
    finished_stage,
    prepare_dataset,
    run_stage,
    spread,
)

METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l')
NUM_EVALS = 4


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument(
        '--families',
        nargs='+',
        choices=sorted({**FAMILIES, **PAIRINGS}),
        default=['conditional'],
        help='model families, or a pairing across families (dino-deformable: D3ETR only)',
    )
    parser.add_argument('--methods', nargs='*', choices=sorted(METHODS), default=sorted(METHODS))
    parser.add_argument('--seeds', nargs='+', type=int, default=[0, 1, 2])
    parser.add_argument('--iters', type=int, help="student schedule (default: the demo's)")
    parser.add_argument('--work-dir', default='work_dirs/accuracy')
    add_dataset_arguments(parser)
    parser.add_argument(
        '--variant',
        nargs='+',
        action='append',
        default=[],
        metavar='METHOD LABEL KEY=VALUE',
        help="one more student: METHOD's config with these config options, row 'METHOD-LABEL'",
    )
    parser.add_argument(
        '--skip-baseline',
        action='store_true',
        help='do not train the baseline (another process does: methods can then run in parallel)',
    )
    parser.add_argument('--quick', action='store_true', help='smoke run: tiny data and schedule')
    args = parser.parse_args()
    for variant in args.variant:
        if len(variant) < 3 or variant[0] not in METHODS or not all('=' in o for o in variant[2:]):
            parser.error(
                f'--variant {" ".join(variant)}: expected METHOD LABEL KEY=VALUE [KEY=VALUE ...] '
                f'with METHOD one of {sorted(METHODS)}'
            )
    for family in args.families:
        methods = args.methods + [v[0] for v in args.variant]  # all names checked above
        missing = sorted({m for m in methods if family not in METHODS[m][2]})
        if missing:
            has = sorted(m for m, (_, _, configs) in METHODS.items() if family in configs)
            parser.error(
                f'--families {family}: no config of {", ".join(missing)} for it; '
                f'pass --methods {" ".join(has)} (or variants of those)'
            )
    return args


def evaluations(log_file: str, val_interval: int) -> Dict[int, Dict[str, float]]:
    """COCO metrics of every validation in a training log, by training iteration.

    mmengine's ``IterBasedTrainLoop`` validates every ``val_interval`` iterations and after
    the last one, so validation k is at min(k * val_interval, max_iters); the log's train lines
    (every ``log_interval`` iterations) need not fall on a validation.
    """
    train_re = re.compile(r'Iter\(train\) \[\s*\d+/(\d+)\]')
    out: Dict[int, Dict[str, float]] = {}
    max_iters = None
    with open(log_file) as f:
        for line in f:
            match = train_re.search(line)
            if match:
                max_iters = int(match.group(1))
            found = coco_metrics(line)  # OD-DETR's EMA too, as 'ema/bbox_mAP'
            if 'bbox_mAP' in found:
                at = (len(out) + 1) * val_interval
                out[at if max_iters is None else min(at, max_iters)] = found
    return out


def summary_table(runs: Dict, teachers: Dict, short: int, long: int, seeds: List[int]) -> str:
    """Markdown: family | student | iters | AP ... AP_l | ΔAP vs baseline | teacher AP | EMA AP.

    ΔAP is the difference of the mean APs over seeds (the baseline's row has none); the last
    column is the AP of the run's EMA model where it reports one (OD-DETR), else '—'."""
    head = (
        '| family | student | iters | AP | AP50 | AP75 | AP_s | AP_m | AP_l '
        '| ΔAP vs baseline | AP (teacher) | AP (EMA model) |'
    )
    rows = [head, '|' + '---|' * 12]
    for family, by_method in runs.items():
        teacher = teachers.get(family)
        t_ap = f'{100 * teacher["metrics"]["bbox_mAP"]:.1f}' if teacher else 'n/a'
        for iters in (short, long):
            mean_ap = {}
            for method, by_seed in by_method.items():
                at = [by_seed[s][iters] for s in seeds if iters in by_seed.get(s, {})]
                if at:
                    mean_ap[method] = 100 * statistics.mean(m['bbox_mAP'] for m in at)
                cells = ' | '.join(spread([m[k] for m in at]) for k in METRICS)
                gain = '—'
                if method != 'baseline' and {method, 'baseline'} <= set(mean_ap):
                    gain = f'{mean_ap[method] - mean_ap["baseline"]:+.1f}'
                ema = [m['ema/bbox_mAP'] for m in at if 'ema/bbox_mAP' in m]
                ema_ap = spread(ema) if ema and len(ema) == len(at) else '—'
                rows.append(
                    f'| {family} | {method} | {iters} | {cells} | {gain} | {t_ap} | {ema_ap} |'
                )
    return '\n'.join(rows)


def plot(
    family: str, by_method: Dict, teacher_ap: Optional[float], path: str, data: str = 'shapes'
) -> None:
    """AP against iterations, one line per student (mean over seeds, min-max band)."""
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for method, by_seed in by_method.items():
        iters = sorted(set.intersection(*(set(r) for r in by_seed.values())))
        aps = [[100 * by_seed[s][i]['bbox_mAP'] for s in by_seed] for i in iters]
        ax.plot(iters, [statistics.mean(a) for a in aps], marker='o', label=method)
        ax.fill_between(iters, [min(a) for a in aps], [max(a) for a in aps], alpha=0.2)
    if teacher_ap is not None:
        ax.axhline(100 * teacher_ap, color='gray', linestyle='--', label='teacher')
    ax.set_xlabel('training iteration')
    ax.set_ylabel('COCO box AP (%)')
    num_seeds = len(next(iter(by_method.values())))
    ax.set_title(f'{family}: generated {data} scenes, {num_seeds} seed{"s" * (num_seeds != 1)}')
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _version(data_root: str) -> str:
    """', scenes version N' from the dataset's manifest where it records one."""
    try:
        with open(osp.join(data_root, 'manifest.json')) as f:
            version = json.load(f).get('params', {}).get('style_version')
    except (OSError, ValueError):
        return ''
    return f', scenes version {version}' if version is not None else ''


def main() -> None:
    args = parse_args()
    num_train, num_val, t_iters, s_iters = SCALES['quick' if args.quick else 'full']
    s_iters = args.iters or s_iters
    os.chdir(REPO_ROOT)
    data_root = prepare_dataset(args.dataset, args.data_root, args.quick)
    interval = max(1, s_iters // NUM_EVALS)
    evals = [f'train_cfg.val_interval={interval}']
    runs: Dict = {}
    teachers: Dict = {}
    for family in args.families:
        teacher_cfg, student_cfg = {**FAMILIES, **PAIRINGS}[family]
        demo_dir = (
            'work_dirs/demo'
            + ('' if family == 'conditional' else f'_{family}')
            + ('' if args.dataset == 'shapes' else f'_{args.dataset}')
        )
        if args.quick:
            demo_dir = osp.join(args.work_dir, family)
        rows = [(m, None, []) for m in args.methods] + [(v[0], v[1], v[2:]) for v in args.variant]
        teacher_stage = Stage('teacher', teacher_cfg, t_iters, [])
        teacher_only = args.skip_baseline and not rows
        if teacher_only or any(METHODS[method][1] for method, _, _ in rows):
            teacher = run_stage(teacher_stage, demo_dir, 0, data_root)
        else:  # no student here needs it: another process may be training it right now
            teacher = finished_stage(teacher_stage, demo_dir, 0, data_root)
            if teacher is None:
                print('[teacher] not trained by this call: none of its students needs it')
        teachers[family] = teacher
        fam_dir = osp.join(args.work_dir, family)
        runs[family] = {}
        students = [] if args.skip_baseline else [('baseline', student_cfg, [])]
        for method, label, options in rows:
            row, needs_teacher, configs = METHODS[method]
            ckpt = [f'model.teacher_ckpt={teacher["checkpoint"]}'] if needs_teacher else []
            name = row.replace(' student', '') + (f'-{label}' if label else '')
            students.append((name, configs[family], ckpt + options))
        for name, config, extra in students:
            runs[family][name] = {}
            for seed in args.seeds:
                stage = Stage(f'{name}_seed{seed}', config, s_iters, extra + evals)
                run_stage(stage, fam_dir, seed, data_root)
                log = osp.join(fam_dir, f'{stage.name}.log')
                runs[family][name][seed] = evaluations(log, interval)
    short, long = interval * (NUM_EVALS // 2), s_iters
    table = summary_table(runs, teachers, short, long, args.seeds)
    note = (
        f'Generated data `{data_root}` ({args.dataset}{_version(data_root)}, {num_train} train / '
        f'{num_val} val images, 128 px); '
        f'students trained {s_iters} iterations (short schedule: the evaluation at {short}), '
        f'seeds {args.seeds}; teacher {t_iters} iterations, seed 0. COCO box AP (%), '
        'mean ± sample std over seeds; ΔAP: difference of the mean APs.'
    )
    os.makedirs(args.work_dir, exist_ok=True)
    for family, by_method in runs.items():
        if not by_method:  # only the teacher was asked for
            continue
        path = osp.join(args.work_dir, f'accuracy_{family}.png')
        teacher = teachers[family]
        t_ap = teacher['metrics']['bbox_mAP'] if teacher else None
        plot(family, by_method, t_ap, path, args.dataset)
        print(f'plot: {path}')
    text = f'{note}\n\n{table}\n'
    print('\n' + text)
    with open(osp.join(args.work_dir, 'accuracy.md'), 'w') as f:
        f.write(text)
    with open(osp.join(args.work_dir, 'accuracy.json'), 'w') as f:
        json.dump(dict(teachers=teachers, runs=runs), f, indent=2)


if __name__ == '__main__':
    main()
