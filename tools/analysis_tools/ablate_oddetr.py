"""OD-DETR ablation on the embedded default: which defaults, and what each part buys.

    python tools/analysis_tools/ablate_oddetr.py [--family conditional]
        [--variants defaults no-init-query ...] [--seeds 0 1 2] [--dataset shapes|clutter]
        [--work-dir work_dirs/ablate_oddetr] [--quick]

Trains, on a generated dataset (``--dataset``: the default shapes, or the harder cluttered
scenes of ``mmdet_detrdistill/datasets/clutter_scene.py``) and the embedded default's student
schedule, the student alone and the OD-DETR variants of ``VARIANTS`` (``--variants``, default
all: the defaults, EMA momentum x10, no EMA warm-up, each component switched off, the
blended-cost assignment and the open details of matching distillation, the initial-query
constraint on boxes too, an initial-query group of the EMA's most confident third), once per
seed. Prints per variant COCO box AP of the student and of its EMA model (mean ± sample std over
seeds, and each seed's) and matching instabilities averaged over the second half of training:
OD-DETR's (``epoch_match_instability``, DN-DETR's definition, ``MatchInstabilityHook``), of the
student and of its EMA model, and the layer-wise one (``layer_match_instability``, which
teacher-guided assignment lowers by construction). Each run's per-probe instabilities
(``match_instability.jsonl``) go to ablation.json as ``instability_series``:
``tools/analysis_tools/plot_instability.py`` plots them (OD-DETR's Fig. 1). The table also goes
to WORK_DIR/ablation.md and ablation.json; each run to WORK_DIR/seedS/VARIANT, one subprocess
through ``tools/run_demo.py``'s machinery (``mmdet_detrdistill.testing.demo_runs``). Finished
runs are reused, so seeds or variants can run as parallel processes and a last call with all of
them only collects. Reuse goes by config, options, seed and schedule, not by code: after a
change of the defaults (the initial-query box terms, 2026-11-30; matching distillation,
2026-12), give a new --work-dir.

Results: docs/reports/2026-11-30_accuracy_cpu.md (*OD-DETR ablation*) and
docs/reports/2026-11-30_oddetr_init_query_boxes.md (per family, with commands).
"""

import argparse
import json
import os
import os.path as osp
import re
import statistics
import sys
from dataclasses import dataclass
from typing import Dict, List, Optional

from mmdet_detrdistill.engine.match_instability_hook import (
    EMA_SCALAR_KEY,
    RECORD_FILE,
    SCALAR_KEY,
)
from mmdet_detrdistill.testing import REPO_ROOT
from mmdet_detrdistill.testing.demo_runs import (
    FAMILIES,
    METHODS,
    SCALES,
    Stage,
    add_dataset_arguments,
    prepare_dataset,
    run_stage,
    spread,
)

BOX_CONSTRAINT_CFG = 'configs/oddetr/oddetr_tiny-s-initbox_1xb8-synth.py'


@dataclass(frozen=True)
class Variant:
    """One row of the ablation: ``--cfg-options`` on top of the family's OD-DETR tiny config,
    or a config of its own (then Conditional DETR only)."""

    name: str
    options: List[str]
    config: Optional[str] = None


# 'alone' switches every component off: the student then trains exactly as without OD-DETR
# (the EMA runs in eval mode, no dropout, no random draws) and its match instability is
# logged too.
ALL_OFF = ['model.guided_assignment=None', 'model.init_query=None', 'model.aux_groups=None']
VARIANTS: Dict[str, Variant] = {
    'alone': Variant('student alone', ALL_OFF),
    'defaults': Variant('OD-DETR (defaults)', []),
    'ema-1e-2': Variant('EMA momentum 1e-2', ['model.ema.momentum=0.01']),
    'no-guided': Variant('no teacher-guided assignment', ['model.guided_assignment=None']),
    # matching distillation (the default since 2026-12; runs of 'defaults' before then are
    # 'guided-blended') and the details the paper leaves open
    'guided-blended': Variant(
        'teacher-guided assignment on a blended cost (alpha 0.5), mmdet losses',
        ['model.guided_assignment.type=ODDETRGuidedAssignment'],
    ),
    'twin-last-layer': Variant(
        "matching distillation, twins from the teacher's last layer",
        ['model.guided_assignment.teacher_layer=last'],
    ),
    'twin-weight-0.5': Variant(
        "matching distillation, the twin's targets weighted 0.5",
        ['model.guided_assignment.twin_weight=0.5'],
    ),
    'own-qfl': Variant(
        'quality focal loss on the own matching only (twin weight 0)',
        ['model.guided_assignment.twin_weight=0.0'],
    ),
    'no-init-query': Variant('no initial-query constraint', ['model.init_query=None']),
    # the cheaper variant for DINO's 900 queries (300 of them), at the tiny models' scale
    'init-query-third': Variant(
        "initial-query constraint on the EMA's 10 most confident of 30 queries",
        ['model.init_query.num_queries=10'],
    ),
    'no-aux': Variant('no auxiliary groups', ['model.aux_groups=None']),
    'no-warmup': Variant('EMA without warm-up', ['model.ema.gamma=1']),
    'init-box-conf': Variant(
        'initial-query constraint on boxes too, teacher-confidence weighted (L1 1, GIoU 0.5)',
        ['model.init_query.losses=None', 'model.init_query.box_weighting=teacher_confidence'],
    ),
    # the default until 2026-11-30 (runs of 'defaults' before then are this variant)
    'init-class-only': Variant(
        'initial-query constraint on class scores only',
        ['model.init_query.losses.loss_bbox=None', 'model.init_query.losses.loss_iou=None'],
    ),
    'init-box': Variant(
        'initial-query constraint on boxes too (L1 5, GIoU 2)', [], BOX_CONSTRAINT_CFG
    ),
}
METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--family', choices=sorted(FAMILIES), default='conditional')
    parser.add_argument(
        '--variants',
        nargs='+',
        choices=list(VARIANTS),
        help='default: all (init-box: Conditional DETR only)',
    )
    parser.add_argument(
        '--seeds', '--seed', nargs='+', type=int, default=[0], help='training seeds (default 0)'
    )
    parser.add_argument('--work-dir', help='default: work_dirs/ablate_oddetr[_FAMILY]')
    add_dataset_arguments(parser)
    parser.add_argument('--quick', action='store_true', help='smoke run: tiny data and schedule')
    return parser.parse_args()


def select_variants(keys: Optional[List[str]], family: str) -> List[str]:
    """The variants to run, in table order; ``init-box`` has a Conditional DETR config only."""
    if keys is None:
        return [k for k, v in VARIANTS.items() if v.config is None or family == 'conditional']
    own_config = [k for k in keys if VARIANTS[k].config is not None]
    if own_config and family != 'conditional':
        raise ValueError(
            f'--variants {" ".join(own_config)}: has a Conditional DETR config only; '
            f'drop it for --family {family}'
        )
    return [k for k in VARIANTS if k in keys]


# (iteration, max iterations, value) of each logged value
LAYER_INSTABILITY_RE = re.compile(
    # `match_instability` in logs written before its rename
    r'Iter\(train\) \[\s*(\d+)/(\d+)\].*(?<!\w)(?:layer_)?match_instability: ([\d.]+)'
)


def mean_instability(log_file: str) -> Optional[float]:
    """Mean of the layer-wise ``layer_match_instability`` of the training log lines in the
    second half of training (a training-loss term: logged, not recorded elsewhere)."""
    values = []
    with open(log_file) as f:
        for line in f:
            match = LAYER_INSTABILITY_RE.search(line)
            if match and int(match.group(1)) * 2 > int(match.group(2)):
                values.append(float(match.group(3)))
    return sum(values) / len(values) if values else None


def instability_series(stage_dir: str) -> List[Dict]:
    """The run's probes from ``MatchInstabilityHook``'s record: ``[{iter, SCALAR_KEY,
    EMA_SCALAR_KEY?}, ...]`` (empty when the run has none)."""
    path = osp.join(stage_dir, RECORD_FILE)
    if not osp.isfile(path):
        return []
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def second_half_mean(series: List[Dict], key: str, iters: int) -> Optional[float]:
    """Mean of ``key`` over the probes in the second half of ``iters`` iterations."""
    values = [r[key] for r in series if key in r and r['iter'] * 2 > iters]
    return sum(values) / len(values) if values else None


def _mean_or_na(values: List[Optional[float]]) -> str:
    values = [v for v in values if v is not None]
    return f'{statistics.mean(values):.3f}' if values else 'n/a'


def table(records: Dict[str, Dict[int, Dict]]) -> str:
    """Markdown, one row per variant over its seeds: AP / AP50 / AP75 as mean ± sample std,
    each seed's AP, the mean match instabilities (OD-DETR's across probes, and layer-wise)
    and the mean train time.

    Args:
        records: variant key -> seed -> run record (``metrics``, ``train_time_s``,
            ``epoch_match_instability``, ``layer_match_instability``).
    """
    out = [
        '| variant | seeds | AP | AP50 | AP75 | AP per seed | EMA model AP | '
        'match instability, OD-DETR (2nd half mean) | its EMA model | '
        'layer-wise (2nd half mean) | train time |',
        '|---|---|---|---|---|---|---|---|---|---|---|',
    ]
    for key, by_seed in records.items():
        recs = [by_seed[s] for s in sorted(by_seed)]
        aps = ' | '.join(spread([r['metrics'][m] for r in recs]) for m in METRICS)
        per_seed = ' / '.join(f'{100 * r["metrics"]["bbox_mAP"]:.1f}' for r in recs)
        ema_ap = spread([r['metrics'].get('ema/bbox_mAP', -1) for r in recs])
        epoch = _mean_or_na([r.get(SCALAR_KEY) for r in recs])
        ema_epoch = _mean_or_na([r.get(EMA_SCALAR_KEY) for r in recs])
        layer = _mean_or_na([r.get('layer_match_instability') for r in recs])
        minutes = statistics.mean(r['train_time_s'] for r in recs) / 60
        out.append(
            f'| {VARIANTS[key].name} | {len(recs)} | {aps} | {per_seed} | {ema_ap} | {epoch} | '
            f'{ema_epoch} | {layer} | {minutes:.1f} min |'
        )
    return '\n'.join(out)


def main() -> None:
    args = parse_args()
    try:
        keys = select_variants(args.variants, args.family)
    except ValueError as err:
        sys.exit(f'ablate_oddetr: {err}')
    num_train, num_val, _, s_iters = SCALES['quick' if args.quick else 'full']
    work_dir = args.work_dir or 'work_dirs/ablate_oddetr' + (
        '' if args.family == 'conditional' else f'_{args.family}'
    ) + ('' if args.dataset == 'shapes' else f'_{args.dataset}')
    os.chdir(REPO_ROOT)
    data_root = prepare_dataset(args.dataset, args.data_root, args.quick)
    oddetr_cfg = METHODS['oddetr'][2][args.family]
    records: Dict[str, Dict[int, Dict]] = {k: {} for k in keys}
    for seed in args.seeds:
        seed_dir = osp.join(work_dir, f'seed{seed}')
        for key in keys:
            variant = VARIANTS[key]
            stage = Stage(key, variant.config or oddetr_cfg, s_iters, variant.options)
            rec = run_stage(stage, seed_dir, seed, data_root)
            series = instability_series(osp.join(seed_dir, key))
            records[key][seed] = dict(
                rec,
                instability_series=series,
                layer_match_instability=mean_instability(osp.join(seed_dir, f'{key}.log')),
                **{k: second_half_mean(series, k, s_iters) for k in (SCALAR_KEY, EMA_SCALAR_KEY)},
            )
    seeds = ' '.join(map(str, args.seeds))
    note = (
        f'OD-DETR ablation, {args.family} family: generated {args.dataset} data `{data_root}` '
        f'({num_train} train / {num_val} val images), {s_iters} iterations, seeds {seeds}; '
        'COCO box AP (%), '
        'mean ± sample std over seeds. Match instability, OD-DETR: fraction of the GT boxes of '
        'fixed training images whose final-layer matched query changed since the previous probe '
        '(MatchInstabilityHook, as configured), of the student and of its EMA model; '
        'layer-wise: between consecutive decoder layers. EMA model AP: n/a where not evaluated.'
    )
    text = f'{note}\n\n{table(records)}\n'
    print('\n' + text)
    with open(osp.join(work_dir, 'ablation.md'), 'w') as f:
        f.write(text)
    with open(osp.join(work_dir, 'ablation.json'), 'w') as f:
        json.dump(records, f, indent=2)


if __name__ == '__main__':
    main()
