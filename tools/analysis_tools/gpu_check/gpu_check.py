"""One prepared check of every family and method on a GPU, time-boxed, as Markdown tables.

    python tools/analysis_tools/gpu_check/gpu_check.py --out DIR [--device cuda|cpu]
        [--configs real|tiny] [--size 800] [--batch 2] [--iters 10]
        [--families conditional,dab,deformable,dino] [--parts bench,amp,resume]
        [--deadline EPOCH | --budget SECONDS] [--build-status TSV]

Usually run by ``gpu_check.sh`` (which builds the stack first). Each unit of work (a part for
one family; with ``--worker-per part``, for all families, as the CPU rehearsal does to start
fewer processes) runs in its own process (``gpu_check_units.py``) under a time box: the
smaller of its ``--box-*`` (per family) and the time left before the deadline, less
``--reserve`` seconds for each unit after it. ``--warmup``, ``--probe-steps`` and
``--amp-steps`` shorten a rehearsal (each step once). A unit that fails, crashes or runs out
of time is recorded in its rows (what it measured before stays) and the next unit runs; units
with no time left are recorded as skipped.

Written to ``--out``: ``gpu_check.md`` (build, cost of distillation, AMP and exact-resume
tables), ``results.json`` (every record) and ``units.log`` (the workers' output).
"""

import argparse
import json
import os
import os.path as osp
import shlex
import signal
import subprocess
import sys
import time
from typing import IO, Dict, List, Optional, Tuple

import gpu_check_table as table
from gpu_check_units import AMP_DTYPES, FAMILIES, METHODS, REPO

Unit = Tuple[str, List[str]]  # a part, and the families one worker runs it for

UNITS_SCRIPT = osp.join(osp.dirname(osp.abspath(__file__)), 'gpu_check_units.py')
PARTS = ('bench', 'amp', 'resume')
MIN_BOX = 10  # seconds: a unit with less than this left is skipped


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--out', required=True, help='directory for the tables and logs')
    parser.add_argument('--device', default='cuda', help='cuda or cpu (rehearsal)')
    parser.add_argument('--configs', choices=['real', 'tiny'], default='real')
    parser.add_argument('--size', type=int, default=800, help='image side in pixels')
    parser.add_argument('--batch', type=int, default=2, help='images per step')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations of bench')
    parser.add_argument('--families', default=','.join(FAMILIES), help='comma-separated')
    parser.add_argument('--parts', default=','.join(PARTS), help='comma-separated, in order')
    parser.add_argument('--deadline', type=float, help='epoch seconds by which all is done')
    parser.add_argument('--budget', type=float, default=420, help='seconds, if no --deadline')
    parser.add_argument('--box-bench', type=float, default=110, help='seconds per family')
    parser.add_argument('--box-amp', type=float, default=60, help='seconds per family')
    parser.add_argument('--box-resume', type=float, default=90, help='seconds per family')
    parser.add_argument('--reserve', type=float, default=20, help='seconds kept per later unit')
    parser.add_argument(
        '--worker-per',
        choices=['family', 'part'],
        default='family',
        help='one worker process per family of a part (a CUDA fault stays in it), or per part',
    )
    parser.add_argument('--warmup', type=int, help="bench: untimed calls (the benchmark's: 2)")
    parser.add_argument('--probe-steps', type=int, help='bench: steps per memory phase (2)')
    parser.add_argument('--amp-dtypes', default=','.join(AMP_DTYPES), help='comma-separated')
    parser.add_argument('--amp-steps', type=int, default=2, help='steps per dtype, last timed')
    parser.add_argument('--build-status', help="gpu_check.sh's build steps (TSV)")
    parser.add_argument('--command', help='the command line to quote in the table')
    args = parser.parse_args(argv)
    args.families = args.families.split(',')
    args.parts = args.parts.split(',')
    args.amp_dtypes = args.amp_dtypes.split(',')
    for name, values, allowed in (
        ('families', args.families, FAMILIES),
        ('parts', args.parts, PARTS),
    ):
        if not set(values) <= set(allowed):
            parser.error(f'--{name}: {values} not all in {list(allowed)}')
    if args.deadline is None:
        args.deadline = time.time() + args.budget
    return args


def plan(args: argparse.Namespace) -> List[Unit]:
    """The units in the order they run: each part for each family, or for all families in
    one worker (``--worker-per part``); resume checks the first family only."""
    units = []
    for part in args.parts:
        families = args.families[:1] if part == 'resume' else args.families
        if args.worker_per == 'part':
            units.append((part, families))
        else:
            units += [(part, [family]) for family in families]
    return units


def expected(part: str, families: List[str], amp_dtypes: List[str] = AMP_DTYPES) -> List[Dict]:
    """The records a unit should write (the keys that identify each)."""
    if part == 'resume':
        return [dict(unit=part, family=family) for family in families]
    rows = [dict(unit=part, family=f, method=m) for f in families for m in METHODS]
    if part == 'amp':
        rows = [dict(row, dtype=dtype) for row in rows for dtype in amp_dtypes]
    return rows


def worker_cmd(args: argparse.Namespace, unit: Unit, results: str) -> List[str]:
    part, families = unit
    cmd = [
        sys.executable, UNITS_SCRIPT, part, '--families', ','.join(families),
        '--results', results, '--device', args.device, '--configs', args.configs,
        '--size', str(args.size), '--batch', str(args.batch), '--iters', str(args.iters),
        '--amp-dtypes', ','.join(args.amp_dtypes), '--amp-steps', str(args.amp_steps),
    ]  # fmt: skip
    for name in ('warmup', 'probe_steps'):
        if getattr(args, name) is not None:
            cmd += [f'--{name.replace("_", "-")}', str(getattr(args, name))]
    return cmd


def run_unit(
    cmd: List[str], box: float, log: IO, device: str = 'cuda'
) -> Tuple[Optional[int], float]:
    """Run ``cmd`` for at most ``box`` seconds (its whole process group is killed after);
    its return code (None: timed out) and wall time."""
    env = dict(os.environ, PYTHONUNBUFFERED='1')
    if device == 'cpu':
        env['CUDA_VISIBLE_DEVICES'] = ''  # also tools/train.py of the resume unit
    start = time.time()
    proc = subprocess.Popen(
        cmd, cwd=REPO, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
    )
    try:
        return proc.wait(timeout=box), time.time() - start
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the worker and any tools/train.py it started
        proc.wait()
        return None, time.time() - start


def collect(results: str, want: List[Dict], rc: Optional[int], wall: float, box: float) -> List:
    """The unit's records, in ``want``'s order; a missing one says why it is missing."""
    got = []
    if osp.exists(results):
        with open(results) as f:
            got = [json.loads(line) for line in f if line.strip()]
    why = f'timeout: over its {box:.0f} s box' if rc is None else f'worker exited {rc}'
    rows = []
    for key in want:
        match = [r for r in got if all(r.get(k) == v for k, v in key.items())]
        rows.append(match[-1] if match else dict(key, status=f'failed: {why} (see units.log)'))
    for row in rows:
        row.setdefault('unit_seconds', round(wall, 1))
    return rows


def run_all(args: argparse.Namespace) -> List[Dict]:
    """Run every planned unit in its time box; all records."""
    os.makedirs(args.out, exist_ok=True)
    units, records = plan(args), []
    with open(osp.join(args.out, 'units.log'), 'w') as log:
        for i, (part, families) in enumerate(units):
            left = args.deadline - time.time() - args.reserve * (len(units) - i - 1)
            box = min(getattr(args, f'box_{part}') * len(families), left)
            want = expected(part, families, args.amp_dtypes)
            if box < MIN_BOX:
                records += [dict(key, status='skipped: no time left') for key in want]
                continue
            name = f'{part} {",".join(families)}'
            results = osp.join(args.out, f'.{part}-{i}.jsonl')
            if osp.exists(results):
                os.remove(results)
            log.write(f'\n===== {name} (box {box:.0f} s) =====\n')
            log.flush()
            print(f'[{i + 1}/{len(units)}] {name} (box {box:.0f} s)', flush=True)
            cmd = worker_cmd(args, (part, families), results)
            rc, wall = run_unit(cmd, box, log, args.device)
            records += collect(results, want, rc, wall, box)
            if osp.exists(results):
                os.remove(results)
    return records


def main(argv=None) -> None:
    args = parse_args(argv)
    started = time.time()
    records = run_all(args)
    build = table.read_build_status(args.build_status)
    command = args.command or ' '.join(shlex.quote(a) for a in sys.argv)
    text = table.render(records, build, table.environment(args), command, time.time() - started)
    with open(osp.join(args.out, 'gpu_check.md'), 'w') as f:
        f.write(text)
    with open(osp.join(args.out, 'results.json'), 'w') as f:
        json.dump(dict(build=build, records=records), f, indent=1)
    print(text)


if __name__ == '__main__':
    main()
