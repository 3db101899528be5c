"""OD-DETR's Fig. 1 for our runs: matching instability per epoch, student alone vs OD-DETR vs
its EMA model.

    python tools/analysis_tools/plot_instability.py ABLATION_JSON [ABLATION_JSON ...]
        --out docs/results/instability.png [--iters-per-epoch 125] [--titles T1 T2 ...]

Reads the ``ablation.json`` files ``tools/analysis_tools/ablate_oddetr.py`` writes (each run's
``instability_series``: the per-probe records of ``MatchInstabilityHook``) and draws, per file,
one panel with three curves over training epochs: the student trained alone (variant
``alone``), the OD-DETR student (``defaults``) and OD-DETR's EMA model (``defaults``, the EMA
series). Each curve is the mean over the seeds, with a band from their minimum to their maximum.
The instability at a probe is DN-DETR's: the fraction of the GT boxes of fixed training images
whose matched query changed since the previous probe. Also prints the per-epoch means as a
Markdown table (and writes it next to the figure, ``.md``).
"""

import argparse
import json
import os.path as osp
from typing import Dict, List, Sequence, Tuple

from mmdet_detrdistill.engine.match_instability_hook import EMA_SCALAR_KEY, SCALAR_KEY

#: (label, ablation variant, series key) of each curve
CURVES: Tuple[Tuple[str, str, str], ...] = (
    ('student alone', 'alone', SCALAR_KEY),
    ('OD-DETR student', 'defaults', SCALAR_KEY),
    ('OD-DETR EMA model', 'defaults', EMA_SCALAR_KEY),
)


def curve(records: Dict, variant: str, key: str) -> Dict[int, List[float]]:
    """iteration -> the seeds' values of ``key`` at that probe (seeds that have it)."""
    out: Dict[int, List[float]] = {}
    for run in records.get(variant, {}).values():
        for probe in run.get('instability_series', []):
            if key in probe:
                out.setdefault(probe['iter'], []).append(probe[key])
    return dict(sorted(out.items()))


def summary_table(panels: Sequence[Tuple[str, Dict]], iters_per_epoch: int) -> str:
    """Markdown: one row per panel and curve, the mean over seeds at each epoch."""
    rows = []
    for title, records in panels:
        curves = {label: curve(records, v, k) for label, v, k in CURVES}
        iters = sorted({i for c in curves.values() for i in c})
        if not rows:
            epochs = ' | '.join(f'{i / iters_per_epoch:g}' for i in iters)
            rows += [f'| run | curve | seeds | {epochs} |', '|---|---|---|' + '---|' * len(iters)]
        for label, points in curves.items():
            seeds = max((len(v) for v in points.values()), default=0)
            cells = ' | '.join(
                f'{sum(points[i]) / len(points[i]):.3f}' if i in points else 'n/a' for i in iters
            )
            rows.append(f'| {title} | {label} | {seeds} | {cells} |')
    return '\n'.join(rows)


def plot(panels: Sequence[Tuple[str, Dict]], out: str, iters_per_epoch: int) -> None:
    import matplotlib

    matplotlib.use('Agg')
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(panels), figsize=(4.5 * len(panels), 3.6), squeeze=False)
    for ax, (title, records) in zip(axes[0], panels):
        for label, variant, key in CURVES:
            points = curve(records, variant, key)
            if not points:
                continue
            x = [i / iters_per_epoch for i in points]
            mean = [sum(v) / len(v) for v in points.values()]
            ax.plot(x, mean, marker='o', ms=3, label=label)
            ax.fill_between(
                x, [min(v) for v in points.values()], [max(v) for v in points.values()], alpha=0.2
            )
        ax.set_title(title, fontsize=10)
        ax.set_xlabel('epoch')
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel('matching instability (DN-DETR)')
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('ablations', nargs='+', help="ablate_oddetr.py's ablation.json files")
    parser.add_argument('--out', required=True, help='figure file (.png)')
    parser.add_argument('--titles', nargs='+', help='one per file (default: its folder name)')
    parser.add_argument(
        '--iters-per-epoch', type=int, default=125, help='default 125: 1000 images at batch 8'
    )
    args = parser.parse_args()
    titles = args.titles or [osp.basename(osp.dirname(osp.abspath(p))) for p in args.ablations]
    if len(titles) != len(args.ablations):
        parser.error(f'--titles: {len(titles)} given for {len(args.ablations)} files')
    panels = []
    for title, path in zip(titles, args.ablations):
        with open(path) as f:
            panels.append((title, json.load(f)))
    plot(panels, args.out, args.iters_per_epoch)
    text = summary_table(panels, args.iters_per_epoch)
    with open(osp.splitext(args.out)[0] + '.md', 'w') as f:
        f.write(text + '\n')
    print(text)
    print(f'figure: {args.out}')


if __name__ == '__main__':
    main()
