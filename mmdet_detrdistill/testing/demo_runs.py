"""The embedded default's training runs: its configs, schedules, stages and results table.

Shared by ``tools/run_demo.py`` and the studies under ``tools/analysis_tools/``
(``benchmark_accuracy.py``, ``ablate_oddetr.py``). A stage runs ``tools/train.py`` in a
subprocess from the repository root (full log: ``WORK_DIR/<stage>.log``); a finished stage with
the same settings and the same config content is reused.
"""

import argparse
import hashlib
import json
import os
import os.path as osp
import re
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Dict, List, Optional

from .synth_runs import REPO_ROOT

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
# pairings across families -> (teacher, student) configs: a study's "family" too, for the
# methods that have a config for it (D3ETR across query counts: 90 -> 30, as DINO's 900 -> 300)
PAIRINGS = {
    'dino-deformable': (
        'configs/embedded/dino_tiny-teacher-q90_1xb8-synth.py',
        'configs/embedded/deformable-detr_tiny-student_1xb8-synth.py',
    ),
}
# method -> (row name, needs the trained teacher, distiller config per family or pairing)
METHODS = {
    'd3etr': (
        'D3ETR student',
        True,
        {
            'conditional': 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py',
            'dab': 'configs/d3etr/d3etr_tiny-dab-t_tiny-dab-s_1xb8-synth.py',
            'deformable': 'configs/d3etr/d3etr_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py',
            'dino': 'configs/d3etr/d3etr_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
            'dino-deformable': 'configs/d3etr/d3etr_tiny-dino-t_tiny-deformable-s_1xb8-synth.py',
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
#: generated datasets of the studies: name -> (default data root, ``make_synthetic_coco`` style)
DATASETS = {'shapes': ('data/synth_coco', 'shapes'), 'clutter': ('data/synth_clutter', 'clutter')}
# (train images, val images, teacher iters, student iters)
SCALES = {'full': (1000, 200, 2000, 1000), 'quick': (64, 16, 20, 10)}
# a log line's `coco/bbox_mAP*: x` and, next to them (OD-DETR's StudentAndEMAValLoop), its EMA's
# `ema/coco/bbox_mAP*: x`, never one read as the other
_METRIC_RE = re.compile(r'(?<![\w/])(ema/)?coco/(bbox_mAP\w*): (-?[\d.]+)')


def coco_metrics(line: str) -> Dict[str, float]:
    """The COCO box metrics of a log line: ``{'bbox_mAP': .., 'ema/bbox_mAP': .., ...}``."""
    return {f'{ema}{name}': float(value) for ema, name, value in _METRIC_RE.findall(line)}


@dataclass
class Stage:
    """One training run of the demo."""

    name: str
    config: str
    iters: int
    extra: List[str]


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


def add_dataset_arguments(parser: argparse.ArgumentParser) -> None:
    """The studies' ``--dataset`` (a name of :data:`DATASETS`) and ``--data-root``."""
    parser.add_argument(
        '--dataset',
        choices=sorted(DATASETS),
        default='shapes',
        help='generated scenes: the default shapes, or the harder cluttered ones',
    )
    parser.add_argument('--data-root', help='where the dataset goes (default: per --dataset)')


def prepare_dataset(dataset: str, data_root: Optional[str], quick: bool) -> str:
    """Generate a study's dataset, or reuse it where it exists; return its root (with
    ``_quick`` appended for a smoke run, whose data are smaller)."""
    from ..datasets import make_synthetic_coco

    num_train, num_val, _, _ = SCALES['quick' if quick else 'full']
    default_root, style = DATASETS[dataset]
    root = (data_root or default_root) + ('_quick' if quick else '')
    make_synthetic_coco(root, num_train, num_val, img_size=128, seed=0, style=style)
    return root


def config_digest(path: str) -> str:
    """Digest of a config's merged content (its bases included, and a teacher config it names).

    A finished stage is reused only while this is unchanged: editing a config, or one it
    inherits from, retrains the stages that use it instead of reusing stale results. Where the
    checkout lies does not count: paths a config makes from ``{{fileDirname}}`` are taken
    relative to the folder above the config's own (``configs/``), so a moved or second
    checkout (a ``git worktree``) reuses the same runs.
    """
    from mmengine.config import Config

    from mmdet_detrdistill.models.distillers.teacher_config import load_teacher_model_cfg

    cfg = Config.fromfile(path)
    text = json.dumps(cfg.to_dict(), sort_keys=True, default=str)
    teacher = cfg.get('model', {}).get('teacher')
    if isinstance(teacher, str):  # a path or 'mmdet::...': the model config the distiller builds
        text += json.dumps(load_teacher_model_cfg(teacher).to_dict(), sort_keys=True, default=str)
    configs_root = osp.dirname(osp.dirname(osp.abspath(path)))
    text = text.replace(configs_root, '<configs>')
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _stage_key(stage: Stage, seed: int, data_root: str) -> Dict:
    """What a finished run must have been trained with to be reused."""
    return dict(
        config=stage.config,
        config_digest=config_digest(stage.config),
        iters=stage.iters,
        seed=seed,
        extra=stage.extra,
        data_root=data_root,
    )


def _stored_record(stage_dir: str) -> Optional[Dict]:
    record_file = osp.join(stage_dir, 'demo_record.json')
    if not osp.isfile(record_file):
        return None
    with open(record_file) as f:
        return json.load(f)


def finished_stage(stage: Stage, work_dir: str, seed: int, data_root: str) -> Optional[Dict]:
    """The record of a finished run of this stage that ``run_stage`` would reuse, else None."""
    record = _stored_record(osp.join(work_dir, stage.name))
    if record is not None and record.get('key') == _stage_key(stage, seed, data_root):
        return record
    return None


def run_stage(stage: Stage, work_dir: str, seed: int, data_root: str) -> Dict:
    """Train one stage (or reuse it), streaming compact progress; return its record."""
    stage_dir = osp.join(work_dir, stage.name)
    record_file = osp.join(stage_dir, 'demo_record.json')
    key = _stage_key(stage, seed, data_root)
    record = _stored_record(stage_dir)
    if record is not None:
        if record.get('key') == key:
            print(f'[{stage.name}] reusing the finished run in {stage_dir}')
            return record
        changed = sorted(k for k in key if record.get('key', {}).get(k) != key[k])
        print(
            f'[{stage.name}] {", ".join(changed)} changed since the run in {stage_dir}: retraining'
        )
    cmd = [
        sys.executable,
        osp.join(REPO_ROOT, 'tools', 'train.py'),
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
    metrics: Dict[str, float] = {}
    with (
        open(log_file, 'w') as log,
        subprocess.Popen(
            cmd,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            bufsize=1,
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
            metrics.update(coco_metrics(line))
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


def spread(values: List[float]) -> str:
    """'mean ± sample std' in AP points over seeds; the mean alone for one seed; n/a when COCO
    reports -1 (no object of that size) or there is no value."""
    if not values or any(v < 0 for v in values):
        return 'n/a'
    mean = 100 * statistics.mean(values)
    if len(values) == 1:
        return f'{mean:.1f}'
    return f'{mean:.1f} ± {100 * statistics.stdev(values):.1f}'
