"""The Markdown report of ``gpu_check.py``: environment, build, cost, AMP and resume tables."""

import argparse
import datetime
import platform
from typing import Dict, List, Optional

NA = '—'


def read_build_status(path: Optional[str]) -> List[Dict]:
    """``gpu_check.sh``'s build steps: one ``step<TAB>status<TAB>seconds<TAB>detail`` a line."""
    if not path:
        return []
    rows = []
    with open(path) as f:
        for line in f:
            step, status, seconds, detail = (line.rstrip('\n').split('\t') + [''] * 4)[:4]
            rows.append(dict(step=step, status=status, seconds=seconds, detail=detail))
    return rows


def environment(args: argparse.Namespace) -> Dict[str, str]:
    """Versions and device, read at the end (a failed build leaves some unknown)."""
    env = dict(python=platform.python_version(), device=args.device)
    try:
        import torch

        env['torch'] = f'{torch.__version__} (CUDA {torch.version.cuda})'
        if args.device.startswith('cuda') and torch.cuda.is_available():
            env['device'] = f'{args.device}: {torch.cuda.get_device_name(0)}'
    except Exception as exc:
        env['torch'] = f'unavailable ({exc})'
    for name in ('mmengine', 'mmdet', 'numpy'):
        try:
            env[name] = __import__(name).__version__
        except Exception as exc:
            env[name] = f'unavailable ({type(exc).__name__})'
    try:
        import mmcv
        from mmcv.ops import get_compiling_cuda_version

        env['mmcv'] = f'{mmcv.__version__} (ops compiled for CUDA {get_compiling_cuda_version()})'
    except Exception as exc:
        env['mmcv'] = f'unavailable ({type(exc).__name__}: {exc})'[:200]
    return env


def _cell(value: Optional[float], fmt: str) -> str:
    return NA if value is None else format(value, fmt)


def _status(row: Dict) -> str:
    return row.get('status', 'ok').replace('|', '/').replace('\n', ' ')


def bench_rows(records: List[Dict]) -> List[str]:
    rows = []
    for r in records:
        times, ratios = r.get('times') or {}, r.get('ratios') or {}
        memory = r.get('memory') or {}
        ms = [_cell(times.get(k) and times[k] * 1e3, '.1f') for k in ('student', 'teacher')]
        ms.append(_cell(times.get('distill') and times['distill'] * 1e3, '.1f'))
        peaks = [
            _cell((memory.get(side) or {}).get('train', 0) / 2.0**20 or None, '.0f')
            for side in ('student', 'distill')
        ]
        share = ratios.get('matching')
        share = _cell(share and share * 100, '.1f') + ('%' if share is not None else '')
        if times and share == NA:
            share = '— (none)'  # the method matches no teacher predictions (OD-DETR)
        rows.append(
            f'| {r["family"]} | {r["method"]} | {_status(r)} | {" | ".join(ms)} '
            f'| {_cell(ratios.get("step"), ".2f")} | {share} | {" | ".join(peaks)} '
            f'| {_cell(ratios.get("memory"), ".2f")} '
            f'| {_cell(ratios.get("memory_no_optimizer"), ".2f")} '
            f'| {_cell(ratios.get("memory_no_teacher_weights"), ".2f")} |'
        )
    return rows


def amp_rows(records: List[Dict]) -> List[str]:
    rows = []
    for r in records:
        finite = (
            NA if 'finite' not in r else ('yes' if r['finite'] and r['params_finite'] else 'no')
        )
        rows.append(
            f'| {r["family"]} | {r["method"]} | {r["dtype"]} | {_status(r)} '
            f'| {_cell(r.get("loss"), ".4g")} | {finite} '
            f'| {_cell(r.get("step") and r["step"] * 1e3, ".1f")} '
            f'| {_cell(r.get("loss_scale"), ".0f")} |'
        )
    return rows


def resume_rows(records: List[Dict]) -> List[str]:
    rows = []
    for r in records:
        diff, repeat = r.get('diff') or {}, r.get('repeat_diff')
        exact = NA if 'exact' not in r else ('yes' if r['exact'] else 'no')
        again = NA if repeat is None else f'{repeat["loss"]:.3g} / {repeat["weight"]:.3g}'
        rows.append(
            f'| {r["family"]} | `{r.get("config", NA)}` | {_status(r)} | {r.get("iters", NA)} '
            f'| {_cell(diff.get("loss"), ".3g")} | {_cell(diff.get("weight"), ".3g")} '
            f'| {exact} | {again} |'
        )
    return rows


def render(
    records: List[Dict], build: List[Dict], env: Dict[str, str], command: str, seconds: float
) -> str:
    """The whole report."""
    by_unit = {u: [r for r in records if r['unit'] == u] for u in ('bench', 'amp', 'resume')}
    now = datetime.datetime.now(datetime.timezone.utc).strftime('%Y-%m-%d %H:%M UTC')
    lines = [f'# GPU check, {now}', '', f'Command: `{command}`', '']
    lines += [f'- {k}: {v}' for k, v in env.items()]
    lines += [f'- checks: {seconds:.0f} s', '']
    if build:
        lines += ['## Build', '', '| step | status | seconds | detail |', '|---' * 4 + '|']
        lines += [
            f'| {b["step"]} | {b["status"]} | {b["seconds"]} | {b["detail"]} |' for b in build
        ]
        lines.append('')
    if by_unit['bench']:
        lines += [
            '## Cost of distillation (medians; peak memory of a training step over live tensors)',
            '',
            '| family | method | status | student step (ms) | teacher fwd (ms) | distill step (ms) '
            '| step ratio | matching share | peak student (MiB) | peak distill (MiB) '
            '| memory ratio | memory ratio, no optimizer | memory ratio, no teacher weights |',
            '|---' * 13 + '|',
            *bench_rows(by_unit['bench']),
            '',
        ]
    if by_unit['amp']:
        lines += [
            '## Mixed precision: one training step of the distiller',
            '',
            '| family | method | dtype | status | loss | finite | step (ms) | loss scale |',
            '|---' * 8 + '|',
            *amp_rows(by_unit['amp']),
            '',
        ]
    if by_unit['resume']:
        lines += [
            '## Exact resume (RNG state of CPU and CUDA in the checkpoint)',
            '',
            '| family | config | status | iters | max abs loss diff | max abs weight diff '
            '| exact | straight twice: loss / weight diff |',
            '|---' * 8 + '|',
            *resume_rows(by_unit['resume']),
            '',
        ]
    return '\n'.join(lines)
