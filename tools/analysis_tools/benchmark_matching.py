"""Hungarian solvers for distillation matching, side by side in one run.

    python tools/analysis_tools/benchmark_matching.py [--sizes 300 900] [--repeats 5]
        [--device cpu|cuda] [--threads N] [--topk 100 300] [--out PATH]

What it measures: for each size N and two kinds of costs, a batch of 12 N x N problems (6 decoder
layers x 2 images, what adaptive matching and logits KD solve per step): *structured* costs,
our adaptive-matching cost (soft-label BCE 1 + L1 5 + GIoU 2, ``MixMatcher``'s defaults) between
a teacher's N predictions and a student's that resemble them, and *uniform* random costs. Every
solver gets the same float32 costs on ``--device`` (as ``MixMatcher`` holds them) and its time
includes any copy to the host. Solvers: scipy serial; our ``solve_assignments`` on 1, 2 and
``--threads`` threads; lapx's single solvers (serial) and batch helpers (1 and ``--threads``
threads); torch-linear-assignment (batched Triton kernel on CUDA, scipy loop on CPU). Missing
packages give a 'not installed' row. The reduction group solves only against the teacher's
top-k most confident queries (N x k): time only; its effect on accuracy needs an AP study, not
done here.

Per row: median time per batch over ``--repeats`` (solvers interleaved round-robin, one untimed
warm-up each), its ratio to scipy serial on the full problem, how many of the 12 assignments are
identical to scipy's (same pairs) and how many have scipy's total cost within 1e-6 relative
(optimal, where the optimum is not unique). The markdown table is printed and written to
``--out`` (default work_dirs/benchmark_matching/matching.md), with results.json beside it.
Results: docs/reports/2026-11-30_matching_900.md.
"""

import argparse
import importlib
import json
import os
import platform
import statistics
import sys
import time
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from mmdet.utils import register_all_modules
from scipy.optimize import linear_sum_assignment
from torch import Tensor

import mmdet_detrdistill  # noqa: F401
from mmdet_detrdistill.models.task_modules.assignment_solver import (
    default_solver_threads,
    solve_assignments,
)

LAYERS, IMAGES = 6, 2  # 12 problems per step
NUM_CLASSES, NUM_OBJECTS = 80, 20
IMG_SHAPE = (800, 1333)
REL_TOL = 1e-6
# A solver takes costs (B, Ns, Nt) on the device and returns the row of each column, (B, Nt)
Solver = Callable[[Tensor], object]


def optional_import(name: str):
    """The module, or None if it is not installed."""
    try:
        return importlib.import_module(name)
    except ImportError:
        return None


def structured_costs(n: int, seed: int, device: str) -> Tuple[Tensor, Tensor]:
    """Adaptive-matching costs of 6 layers x 2 images, (12, n, n), and teacher scores (12, n).

    Per image, ``NUM_OBJECTS`` objects; 70% of the teacher's queries sit on an object (jittered
    box; one confident query per object, low-scoring duplicates), the rest are background. The
    student of layer l is the teacher plus noise shrinking with depth, 20% of its queries
    replaced by unrelated ones, in a random query order.
    """
    g = torch.Generator().manual_seed(seed)
    problems = []
    for _ in range(IMAGES):
        t_logits, t_boxes = _teacher(n, g)
        for layer in range(LAYERS):
            scale = 1.0 - 0.75 * layer / (LAYERS - 1)
            s_logits = t_logits + torch.randn(t_logits.shape, generator=g) * 1.5 * scale
            s_boxes = t_boxes + torch.randn(t_boxes.shape, generator=g) * 0.03 * scale
            fake = torch.rand(n, generator=g) < 0.2
            s_logits[fake] = torch.randn(int(fake.sum()), NUM_CLASSES, generator=g) - 6
            s_boxes[fake] = _random_boxes(int(fake.sum()), g)
            order = torch.randperm(n, generator=g)
            problems.append((s_logits[order], s_boxes[order].clamp(0.01, 0.99), t_logits, t_boxes))
    s_logits, s_boxes, t_logits, t_boxes = (torch.stack(x).to(device) for x in zip(*problems))
    costs = _match_costs(s_logits, s_boxes, t_logits, t_boxes)
    return costs, t_logits.sigmoid().amax(-1)


def _teacher(n: int, g: torch.Generator) -> Tuple[Tensor, Tensor]:
    """One image's teacher: logits (n, C) and normalised cxcywh boxes (n, 4)."""
    obj_boxes = _random_boxes(NUM_OBJECTS, g)
    obj_labels = torch.randint(NUM_CLASSES, (NUM_OBJECTS,), generator=g)
    on_object = torch.rand(n, generator=g) < 0.7
    obj = torch.randint(NUM_OBJECTS, (n,), generator=g)
    boxes = _random_boxes(n, g)
    jitter = torch.randn(n, 4, generator=g) * 0.05 * obj_boxes[obj][:, [2, 3, 2, 3]]
    boxes[on_object] = (obj_boxes[obj] + jitter)[on_object]
    logits = torch.randn(n, NUM_CLASSES, generator=g) - 6
    boost = torch.where(on_object, torch.randn(n, generator=g) * 1.5 + 3, torch.zeros(n))
    first = torch.zeros(n, dtype=torch.bool)  # the first query on each object is confident
    for k in range(NUM_OBJECTS):
        hits = (on_object & (obj == k)).nonzero()
        first[hits[:1, 0]] = True
    boost[first] = 8.0
    logits[torch.arange(n), obj_labels[obj]] += boost
    return logits, boxes.clamp(0.01, 0.99)


def _random_boxes(n: int, g: torch.Generator) -> Tensor:
    """n normalised cxcywh boxes, centres in [0.1, 0.9], sides in [0.05, 0.4]."""
    return torch.cat(
        [torch.rand(n, 2, generator=g) * 0.8 + 0.1, torch.rand(n, 2, generator=g) * 0.35 + 0.05], -1
    )


def _match_costs(s_logits: Tensor, s_boxes: Tensor, t_logits: Tensor, t_boxes: Tensor) -> Tensor:
    """``MixMatcher``'s default costs (built from the registry); the same formulas if it fails."""
    metas = [dict(img_shape=IMG_SHAPE)] * len(s_logits)
    try:
        register_all_modules(init_default_scope=False)
        matcher = TASK_UTILS.build(dict(type='MixMatcher'))
        return matcher.batch_cost_matrices(s_logits, s_boxes, t_logits, t_boxes, metas)
    except Exception as error:  # the package is being refactored: keep the benchmark running
        print(f'MixMatcher unavailable ({error!r}): same formulas inline', file=sys.stderr)
    return inline_match_costs(s_logits, s_boxes, t_logits, t_boxes)


def inline_match_costs(
    s_logits: Tensor, s_boxes: Tensor, t_logits: Tensor, t_boxes: Tensor
) -> Tensor:
    """Soft-label BCE 1 + L1 5 + GIoU 2, ``MixMatcher``'s defaults, (B, Ns, Nt)."""
    h, w = IMG_SHAPE
    factors = s_boxes.new_tensor([w, h, w, h])
    probs = t_logits.sigmoid()
    cls = torch.nn.functional.softplus(s_logits).sum(-1, keepdim=True) - s_logits @ probs.mT
    l1 = torch.cdist(s_boxes, t_boxes, p=1)  # normalised cxcywh, as BBoxL1Cost(box_format='xywh')
    giou = bbox_overlaps(
        bbox_cxcywh_to_xyxy(s_boxes) * factors, bbox_cxcywh_to_xyxy(t_boxes) * factors, mode='giou'
    )
    return cls + 5 * l1 - 2 * giou


def uniform_costs(n: int, seed: int, device: str) -> Tuple[Tensor, Tensor]:
    """Uniform random costs in [0, 1), (12, n, n), and random 'teacher scores' (12, n)."""
    g = torch.Generator().manual_seed(seed)
    shape = (LAYERS * IMAGES, n)
    return torch.rand(*shape, n, generator=g).to(device), torch.rand(shape, generator=g)


def _host(costs: Tensor) -> np.ndarray:
    return costs.detach().cpu().numpy()


def _rows_of_cols(rows, cols, nt: int) -> np.ndarray:
    out = np.full(nt, -1, dtype=np.int64)
    out[np.asarray(cols)] = np.asarray(rows)
    return out


def _per_problem(solve_one: Callable) -> Solver:
    """A solver looping ``solve_one(cost) -> (rows, cols)`` over the problems."""
    return lambda c: np.stack([_rows_of_cols(*solve_one(x), c.shape[2]) for x in _host(c)])


def _batched(solve_batch: Callable) -> Solver:
    """A solver from ``solve_batch(costs) -> (rows_list, cols_list)``."""
    return lambda c: np.stack(
        [_rows_of_cols(r, k, c.shape[2]) for r, k in zip(*solve_batch(_host(c)))]
    )


def _ours(threads: int) -> Solver:
    return _batched(lambda c: solve_assignments(c, threads))


def lapx_solvers(lap, threads: int) -> List[Tuple[str, int, Solver]]:
    """lapx's single solvers (a serial loop) and batch helpers (on 1 and ``threads`` threads)."""
    solvers = [
        ('lapx lapjv (loop)', 1, _per_problem(lambda x: _lapjv_pairs(lap, x))),
        ('lapx lapjvc (loop)', 1, _per_problem(lambda x: lap.lapjvc(x, return_cost=False))),
        ('lapx lapjvs (loop)', 1, _per_problem(lambda x: lap.lapjvs(x, return_cost=False))),
    ]
    for name in ('lapjvx_batch', 'lapjvs_batch', 'lapjvr_batch', 'lapjvh_batch'):
        fn = getattr(lap, name, None)
        for t in sorted({1, threads}) if fn is not None else ():
            kw = dict(extend_cost=True, return_cost=False, n_threads=t)
            solvers.append((f'lapx {name}', t, _batched(lambda c, fn=fn, kw=kw: fn(c, **kw))))
    return solvers


def _lapjv_pairs(lap, cost: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    _, y = lap.lapjv(cost, extend_cost=cost.shape[0] != cost.shape[1], return_cost=False)
    return y, np.arange(len(y))  # y[j]: the row of column j


def tla_solver(tla) -> Solver:
    """torch-linear-assignment on the costs' device; rows of columns stay there."""

    def solve(costs: Tensor) -> Tensor:
        assignment = tla.batch_linear_assignment(costs)  # (B, Ns): column of each row, or -1
        b, ns, nt = costs.shape
        out = torch.full((b, nt + 1), -1, dtype=torch.long, device=costs.device)
        rows = torch.arange(ns, device=costs.device).expand(b, -1)
        out.scatter_(1, torch.where(assignment < 0, nt, assignment), rows)
        return out[:, :nt]

    return solve


def solver_rows(threads: int, device: str) -> List[dict]:
    """Every solver to run, or a row saying why it is not there."""
    cpu = 'cpu' if device == 'cpu' else 'cpu (+copy)'
    rows = [
        dict(solver='scipy serial', device=cpu, threads=1, fn=_per_problem(linear_sum_assignment))
    ]
    for t in sorted({1, 2, threads}):
        rows.append(dict(solver='ours solve_assignments', device=cpu, threads=t, fn=_ours(t)))
    lap = optional_import('lap')
    if lap is None:
        rows.append(dict(solver='lapx', device='-', threads='-', note='not installed'))
    else:
        for name, t, fn in lapx_solvers(lap, threads):
            rows.append(dict(solver=name, device=cpu, threads=t, fn=fn))
    tla = optional_import('torch_linear_assignment')
    if tla is None:
        rows.append(
            dict(solver='torch-linear-assignment', device='-', threads='-', note='not installed')
        )
    else:
        where = 'cuda (Triton)' if device == 'cuda' else 'cpu (scipy loop)'
        rows.append(
            dict(solver='torch-linear-assignment', device=where, threads=1, fn=tla_solver(tla))
        )
    return rows


def _sync(device: str) -> None:
    if device == 'cuda':
        torch.cuda.synchronize()


def time_solvers(rows: List[dict], costs: Tensor, repeats: int, device: str) -> None:
    """Median seconds per batch of each row with an ``fn``, round-robin; also its result."""
    live = []
    for row in rows:
        if 'fn' not in row:
            continue
        try:
            row['result'] = np.asarray(torch.as_tensor(row['fn'](costs)).cpu())  # warm-up
            live.append(row)
        except Exception as error:  # one failing solver must not end the comparison
            row['note'] = f'failed: {type(error).__name__}: {error}'[:120]
        row['times'] = []
    for r in range(repeats if live else 0):
        for row in live[r % len(live) :] + live[: r % len(live)]:  # rotate the start
            _sync(device)
            start = time.perf_counter()
            row['fn'](costs)
            _sync(device)
            row['times'].append(time.perf_counter() - start)
    for row in live:
        row['seconds'] = statistics.median(row['times'])


def compare(result: np.ndarray, reference: np.ndarray, costs: np.ndarray) -> Tuple[int, int]:
    """How many problems have scipy's pairs, and how many scipy's total cost (1e-6 rel)."""
    identical = optimal = 0
    cols = np.arange(costs.shape[2])
    for cost, rows, ref in zip(costs.astype(np.float64), result, reference):
        identical += bool(np.array_equal(rows, ref))
        valid = rows.min() >= 0 and len(np.unique(rows)) == len(rows)
        total, ref_total = cost[rows, cols].sum(), cost[ref, cols].sum()
        optimal += bool(valid and abs(total - ref_total) <= REL_TOL * max(abs(ref_total), 1e-12))
    return identical, optimal


def run_case(kind: str, n: int, args: argparse.Namespace) -> List[dict]:
    """All rows of one (cost kind, N): the full problems, then each top-k reduction."""
    costs, scores = KINDS[kind](n, args.seed, args.device)
    groups = [('exact', costs)]
    for k in (k for k in args.topk if k < n):
        top = scores.to(costs.device).topk(k, dim=-1).indices  # (B, k) most confident queries
        groups.append((f'top-{k} teacher', costs.gather(2, top[:, None].expand(-1, n, -1))))
    out, base = [], None
    for group, c in groups:
        rows = solver_rows(args.threads, args.device)
        if group != 'exact':  # reductions: scipy and the batched solvers, all threads
            rows = [r for r in rows if _in_reduction(r, args.threads)]
        time_solvers(rows, c, args.repeats, args.device)
        host, ref = _host(c), rows[0]['result']
        base = base or rows[0]['seconds']
        for row in rows:
            row.update(costs=kind, n=n, group=group, ms=None, ratio=None, identical=None)
            if 'seconds' in row:
                ident, opt = compare(row['result'], ref, host)
                row.update(
                    ms=1e3 * row['seconds'],
                    ratio=base / row['seconds'],
                    identical=f'{ident}/{len(host)}',
                    optimal=f'{opt}/{len(host)}',
                )
            out.append({k: v for k, v in row.items() if k not in ('fn', 'result')})
    return out


KINDS = {'structured': structured_costs, 'uniform': uniform_costs}


def _in_reduction(row: dict, threads: int) -> bool:
    return 'fn' in row and row['solver'] in REDUCTION_SOLVERS and row['threads'] in (1, threads)


REDUCTION_SOLVERS = (
    'scipy serial',
    'ours solve_assignments',
    'lapx lapjvr_batch',
    'torch-linear-assignment',
)
COLUMNS = (
    ('costs', 'costs'),
    ('N', 'n'),
    ('problem', 'group'),
    ('solver', 'solver'),
    ('device', 'device'),
    ('threads', 'threads'),
    ('ms / 12 solves', 'ms'),
    ('speed-up vs scipy serial', 'ratio'),
    ('identical pairs', 'identical'),
    ('scipy total cost (1e-6 rel)', 'optimal'),
    ('note', 'note'),
)


def _cell(value, key: str) -> str:
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.2f}' if key == 'ratio' or value < 10 else f'{value:.1f}'
    return str(value)


def markdown(rows: List[dict], header: Dict[str, object]) -> str:
    """The table, with the run's settings above it."""
    lines = [f'- {k}: {v}' for k, v in header.items()] + ['']
    lines.append('| ' + ' | '.join(name for name, _ in COLUMNS) + ' |')
    lines.append('|' + '---|' * len(COLUMNS))
    lines += ['| ' + ' | '.join(_cell(r.get(key), key) for _, key in COLUMNS) + ' |' for r in rows]
    lines += [
        '',
        'Top-k rows: identical / total cost compare with scipy on the same reduced '
        'N x k problem; their effect on accuracy needs an AP study (not done here).',
    ]
    return '\n'.join(lines) + '\n'


def _load() -> str:
    return ', '.join(f'{x:.2f}' for x in os.getloadavg())


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', type=int, nargs='+', default=[300, 900], help='queries N')
    parser.add_argument('--repeats', type=int, default=5, help='timed batches per solver')
    parser.add_argument('--device', choices=('cpu', 'cuda'), default='cpu')
    parser.add_argument(
        '--threads',
        type=int,
        default=default_solver_threads(),
        help="threads of the threaded solvers (default: this process's CPUs)",
    )
    parser.add_argument(
        '--topk',
        type=int,
        nargs='*',
        default=[100, 300],
        help='teacher queries kept by the reduction rows',
    )
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--out', default='work_dirs/benchmark_matching/matching.md')
    args = parser.parse_args(argv)
    if args.device == 'cuda' and not torch.cuda.is_available():
        parser.error('--device cuda: torch.cuda.is_available() is False here; use --device cpu')
    if args.threads < 1 or args.repeats < 1:
        parser.error('--threads and --repeats must be positive')
    return args


def run_header(args: argparse.Namespace, argv: Sequence[str], load_before: str) -> dict:
    """What the table was measured with: command, device, host load, package versions."""
    lap, tla = optional_import('lap'), optional_import('torch_linear_assignment')
    gpu = f' ({torch.cuda.get_device_name()})' if args.device == 'cuda' else ''
    return {
        'command': ' '.join(['python', 'tools/analysis_tools/benchmark_matching.py', *argv]),
        'problems per batch': f'{LAYERS * IMAGES} ({LAYERS} layers x {IMAGES} images), float32',
        'device': args.device + gpu,
        'host': f'{platform.node()}, {os.cpu_count()} CPUs, threads={args.threads}',
        'load average (1, 5, 15 min) before / after': f'{load_before} / {_load()}',
        'versions': f'torch {torch.__version__}, numpy {np.__version__}, '
        f'scipy {importlib.import_module("scipy").__version__}, '
        f'lapx {getattr(lap, "__version__", "not installed")}, '
        f'torch-linear-assignment {"installed" if tla else "not installed"}',
        'repeats': f'{args.repeats} (median; solvers round-robin, one warm-up each)',
    }


def write_results(rows: List[dict], header: dict, out: str) -> dict:
    """The table to ``out`` and everything to results.json beside it; returns the latter."""
    out_dir = os.path.dirname(os.path.abspath(out))
    os.makedirs(out_dir, exist_ok=True)
    with open(out, 'w') as f:
        f.write(markdown(rows, header))
    results = dict(header=header, rows=rows)
    with open(os.path.join(out_dir, 'results.json'), 'w') as f:
        json.dump(results, f, indent=1, default=str)
    return results


def main(argv: Optional[Sequence[str]] = None) -> dict:
    """Run the comparison; print the table; write it and results.json after every case (a
    run cut short by a time limit keeps what it measured); return the results."""
    args = parse_args(argv)
    load_before, rows = _load(), []
    for n in args.sizes:
        for kind in KINDS:
            for row in run_case(kind, n, args):
                row['times_ms'] = [1e3 * t for t in row.pop('times', [])]
                rows.append(row)
            header = run_header(args, sys.argv[1:] if argv is None else argv, load_before)
            results = write_results(rows, header, args.out)
    print(markdown(rows, header))
    return results


if __name__ == '__main__':
    main()
