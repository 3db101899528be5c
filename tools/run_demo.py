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
(tiny data, a few iterations).
"""

import argparse
import hashlib
import json
import os
import os.path as osp
import re
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Dict, List

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
# family -> (teacher, student) configs of the embedded default
FAMILIES = {
    'conditional': (
        'configs/embedded/conditional-detr_tiny-teacher_1xb8-synth.py',
        'configs/embedded/conditional-detr_tiny-student_1xb8-synth.py',
    ),
    'dab': (
        'configs/embedded/dab-detr_tiny-teacher_1xb8-synth.py',
        'configs/embedded/dab-detr_tiny-student_1xb8-synth.py',
    ),
    'deformable': (
        'configs/embedded/deformable-detr_tiny-teacher_1xb8-synth.py',
        'configs/embedded/deformable-detr_tiny-student_1xb8-synth.py',
    ),
    'dino': (
        'configs/embedded/dino_tiny-teacher_1xb8-synth.py',
        'configs/embedded/dino_tiny-student_1xb8-synth.py',
    ),
}
# method -> (row name, needs the trained teacher, distiller config per family)
METHODS = {
    'd3etr': (
        'D3ETR student',
        True,
        {
            'conditional': 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py',
            'dab': 'configs/d3etr/d3etr_tiny-dab-t_tiny-dab-s_1xb8-synth.py',
            'deformable': 'configs/d3etr/d3etr_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py',
            'dino': 'configs/d3etr/d3etr_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
        },
    ),
    'detrdistill': (
        'DETRDistill student',
        True,
        {
            'conditional': 'configs/detrdistill/detrdistill_tiny-t_tiny-s_1xb8-synth.py',
            'dab': 'configs/detrdistill/detrdistill_tiny-dab-t_tiny-dab-s_1xb8-synth.py',
            'deformable': (
                'configs/detrdistill/detrdistill_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py'
            ),
            'dino': 'configs/detrdistill/detrdistill_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
        },
    ),
    'oddetr': (
        'OD-DETR student',
        False,  # its teacher is its own EMA
        {
            'conditional': 'configs/oddetr/oddetr_tiny-s_1xb8-synth.py',
            'dab': 'configs/oddetr/oddetr_tiny-dab-s_1xb8-synth.py',
            'deformable': 'configs/oddetr/oddetr_tiny-deformable-s_1xb8-synth.py',
            'dino': 'configs/oddetr/oddetr_tiny-dino-s_1xb8-synth.py',
        },
    ),
}
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m')
# (train images, val images, teacher iters, student iters)
SCALES = {'full': (1000, 200, 2000, 1000), 'quick': (64, 16, 20, 10)}


@dataclass
class Stage:
    """One training run of the demo."""

    name: str
    config: str
    iters: int
    extra: List[str]


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


def schedule_options(iters: int, seed: int, data_root: str) -> List[str]:
    """--cfg-options that set the schedule, the seed and the dataset root."""
    root = data_root.rstrip('/') + '/'
    return [
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={iters}',
        f'param_scheduler.0.end={iters}',
        f'param_scheduler.0.milestones=[{int(iters * 0.8)}]',
        f'default_hooks.checkpoint.interval={iters}',
        f'default_hooks.logger.interval={max(1, min(50, iters // 10))}',
        f'randomness.seed={seed}',
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={root}annotations/val.json',
        f'test_evaluator.ann_file={root}annotations/val.json',
    ]


def config_digest(path: str) -> str:
    """Digest of a config's merged content (its bases included, and a teacher config it names).

    A finished stage is reused only while this is unchanged: editing a config, or one it
    inherits from, retrains the stages that use it instead of reusing stale results.
    """
    from mmengine.config import Config

    from mmdet_detrdistill.models.distillers.teacher_config import load_teacher_model_cfg

    cfg = Config.fromfile(path)
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    teacher = cfg.get('model', {}).get('teacher')
    if isinstance(teacher, str):  # a path or 'mmdet::...': the model config the distiller builds
        text += json.dumps(load_teacher_model_cfg(teacher).to_dict(), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def run_stage(stage: Stage, work_dir: str, seed: int, data_root: str) -> Dict:
    """Train one stage (or reuse it), streaming compact progress; return its record."""
    stage_dir = osp.join(work_dir, stage.name)
    record_file = osp.join(stage_dir, 'demo_record.json')
    key = dict(
        config=stage.config,
        config_digest=config_digest(stage.config),
        iters=stage.iters,
        seed=seed,
        extra=stage.extra,
        data_root=data_root,
    )
    if osp.isfile(record_file):
        with open(record_file) as f:
            record = json.load(f)
        if record.get('key') == key:
            print(f'[{stage.name}] reusing the finished run in {stage_dir}')
            return record
        changed = sorted(k for k in key if record.get('key', {}).get(k) != key[k])
        print(
            f'[{stage.name}] {", ".join(changed)} changed since the run in {stage_dir}: retraining'
        )
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'train.py'),
        stage.config,
        '--work-dir',
        stage_dir,
        '--cfg-options',
        *schedule_options(stage.iters, seed, data_root),
        *stage.extra,
    ]
    print(
        f'[{stage.name}] training {stage.config} for {stage.iters} iterations '
        f'(log: {stage_dir}.log)',
        flush=True,
    )
    os.makedirs(stage_dir, exist_ok=True)
    start = time.time()
    metrics = _train_with_progress(cmd, stage, stage_dir + '.log')
    record = dict(
        key=key,
        stage=asdict(stage),
        metrics=metrics,
        train_time_s=round(time.time() - start, 1),
        threads=os.environ.get('OMP_NUM_THREADS') or 'default',
        checkpoint=osp.join(stage_dir, f'iter_{stage.iters}.pth'),
    )
    with open(record_file, 'w') as f:
        json.dump(record, f, indent=2)
    return record


def _train_with_progress(cmd: List[str], stage: Stage, log_file: str) -> Dict[str, float]:
    iter_re = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*?eta: (\S+).*?loss: ([\d.]+)')
    metric_re = re.compile(r'coco/(bbox_mAP\w*): (-?[\d.]+)')
    metrics: Dict[str, float] = {}
    with (
        open(log_file, 'w') as log,
        subprocess.Popen(
            cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        ) as proc,
    ):
        for line in proc.stdout:
            log.write(line)
            match = iter_re.search(line)
            if match:
                it, total, eta, loss = match.groups()
                print(
                    f'[{stage.name}] iter {it}/{total}  loss {float(loss):.3f}  eta {eta}',
                    flush=True,
                )
            metrics.update({k: float(v) for k, v in metric_re.findall(line)})
        proc.wait()
    if proc.returncode != 0:
        with open(log_file) as f:
            tail = ''.join(f.readlines()[-25:])
        raise SystemExit(
            f'[{stage.name}] training failed (exit {proc.returncode}); '
            f'last lines of {log_file}:\n{tail}'
        )
    if 'bbox_mAP' not in metrics:
        raise SystemExit(f'[{stage.name}] no COCO metrics found in {log_file}')
    return metrics


def _threads(record: Dict) -> str:
    """' (N threads)' when the stage ran with OMP_NUM_THREADS=N, else ''."""
    threads = record.get('threads', 'default')
    return '' if threads == 'default' else f' ({threads} thread{"s" * (threads != "1")})'


def results_table(records: Dict[str, Dict]) -> str:
    """Markdown table of the stages' COCO metrics (AP in %)."""
    head = '| model | config | iters | AP | AP50 | AP75 | AP_s | AP_m | train time |'
    rows = [head, '|' + '---|' * 9]
    for name, rec in records.items():
        m, st = rec['metrics'], rec['stage']
        aps = ' | '.join(f'{100 * m[k]:.1f}' if m.get(k, -1) >= 0 else 'n/a' for k in METRICS)
        rows.append(
            f'| {name} | `{st["config"]}` | {st["iters"]} | {aps} | '
            f'{rec["train_time_s"] / 60:.1f} min{_threads(rec)} |'
        )
    return '\n'.join(rows)


def main() -> None:
    args = parse_args()
    num_train, num_val, t_iters, s_iters = SCALES['quick' if args.quick else 'full']
    teacher_cfg, student_cfg = FAMILIES[args.family]
    if args.work_dir is None:
        suffix = '' if args.family == 'conditional' else f'_{args.family}'
        args.work_dir = f'work_dirs/demo{suffix}'
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    from mmdet_detrdistill.datasets import make_synthetic_coco

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
