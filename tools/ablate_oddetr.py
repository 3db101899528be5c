"""OD-DETR ablation on the embedded default: which defaults, and what each part buys.

    python tools/ablate_oddetr.py [--family conditional] [--work-dir work_dirs/ablate_oddetr]
                                  [--quick] [--seed 0]

Trains, on the generated dataset and the embedded default's student schedule, the student
alone and OD-DETR variants: the defaults, EMA momentum x10, no EMA warm-up, each component
switched off, and the initial-query constraint on boxes too (Conditional DETR only).
Prints COCO box AP and the mean ``match_instability`` logged in the second half of training
per variant as a table (also WORK_DIR/ablation.md and ablation.json). Stages run through
``tools/run_demo.py``'s machinery (one subprocess each, finished stages reused).
"""

import argparse
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from run_demo import FAMILIES, METHODS, SCALES, Stage, run_stage  # noqa: E402

# name -> --cfg-options on top of the OD-DETR tiny config. 'student alone' switches every
# component off: the student then trains exactly as without OD-DETR (the EMA runs in eval
# mode, no dropout, no random draws) and its match instability is logged too.
ALL_OFF = ['model.guided_assignment=None', 'model.init_query=None', 'model.aux_groups=None']
VARIANTS: Dict[str, Optional[List[str]]] = {
    'student alone': ALL_OFF,
    'OD-DETR (defaults)': [],
    'EMA momentum 1e-2': ['model.ema.momentum=0.01'],
    'no teacher-guided assignment': ['model.guided_assignment=None'],
    'no initial-query constraint': ['model.init_query=None'],
    'no auxiliary groups': ['model.aux_groups=None'],
    'EMA without warm-up': ['model.ema.gamma=1'],
    'initial-query constraint on boxes too (L1 5, GIoU 2)': None,  # its own config
}
BOX_CONSTRAINT_CFG = 'configs/oddetr/oddetr_tiny-s-initbox_1xb8-synth.py'


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--family', choices=sorted(FAMILIES), default='conditional')
    parser.add_argument('--work-dir', help='default: work_dirs/ablate_oddetr[_FAMILY]')
    parser.add_argument('--data-root', default='data/synth_coco', help='generated dataset')
    parser.add_argument('--quick', action='store_true', help='smoke run: tiny data and schedule')
    parser.add_argument('--seed', type=int, default=0, help='training seed of every stage')
    return parser.parse_args()


def mean_instability(log_file: str) -> Optional[float]:
    """Mean of the ``match_instability`` values logged in the second half of training."""
    iter_re = re.compile(r'Iter\(train\) \[\s*(\d+)/(\d+)\].*match_instability: ([\d.]+)')
    values = []
    with open(log_file) as f:
        for line in f:
            match = iter_re.search(line)
            if match and int(match.group(1)) * 2 > int(match.group(2)):
                values.append(float(match.group(3)))
    return sum(values) / len(values) if values else None


def table(rows: List[Tuple[str, Dict, Optional[float]]]) -> str:
    """Markdown: variant | AP | AP50 | AP75 | match instability | train time."""
    out = ['| variant | AP | AP50 | AP75 | match instability (2nd half mean) | train time |']
    out.append('|---|---|---|---|---|---|')
    for name, rec, instab in rows:
        m = rec['metrics']
        aps = ' | '.join(f'{100 * m[k]:.1f}' for k in ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75'))
        inst = 'n/a' if instab is None else f'{instab:.3f}'
        out.append(f'| {name} | {aps} | {inst} | {rec["train_time_s"] / 60:.1f} min |')
    return '\n'.join(out)


def main() -> None:
    args = parse_args()
    num_train, num_val, _, s_iters = SCALES['quick' if args.quick else 'full']
    work_dir = args.work_dir or 'work_dirs/ablate_oddetr' + (
        '' if args.family == 'conditional' else f'_{args.family}'
    )
    os.chdir(ROOT)
    sys.path.insert(0, ROOT)
    from mmdet_detrdistill.datasets import make_synthetic_coco

    data_root = args.data_root + ('_quick' if args.quick else '')
    make_synthetic_coco(data_root, num_train, num_val, img_size=128, seed=0)
    oddetr_cfg = METHODS['oddetr'][2][args.family]
    rows, records = [], {}
    for i, (name, options) in enumerate(VARIANTS.items()):
        if options is None and args.family != 'conditional':
            continue
        config = oddetr_cfg if options is not None else BOX_CONSTRAINT_CFG
        stage = Stage(f'v{i}', config, s_iters, options or [])
        rec = run_stage(stage, work_dir, args.seed, data_root)
        instab = mean_instability(osp.join(work_dir, f'v{i}.log'))
        rows.append((name, rec, instab))
        records[name] = dict(rec, match_instability=instab)
    note = (
        f'OD-DETR ablation, {args.family} family: generated data `{data_root}` ({num_train} '
        f'train / {num_val} val images), {s_iters} iterations, seed {args.seed}; COCO box AP (%).'
    )
    text = f'{note}\n\n{table(rows)}\n'
    print('\n' + text)
    with open(osp.join(work_dir, 'ablation.md'), 'w') as f:
        f.write(text)
    with open(osp.join(work_dir, 'ablation.json'), 'w') as f:
        json.dump(records, f, indent=2)


if __name__ == '__main__':
    main()
