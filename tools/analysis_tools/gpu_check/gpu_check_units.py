"""The units of work of ``gpu_check.py``, run in a worker process each (see its docstring).

    python tools/analysis_tools/gpu_check/gpu_check_units.py bench|amp|resume --families F[,F]
        --results FILE [--device cuda] [--configs real|tiny] ...

A unit appends one JSON line per finished measurement to ``--results`` as soon as it has it,
so that what was measured before a time-out or a crash survives; an exception in one method is
recorded and the next method runs.

* ``bench``: for each method of the family, the step times, matching share and peak memory of
  ``tools/analysis_tools/benchmark_step_time.py`` (``mmdet_detrdistill.testing.step_time``),
  measured in this one process (on CUDA the peak is ``torch.cuda.max_memory_allocated`` over
  the live tensors, as the benchmark's; on the CPU, the rehearsal, the rise of the RSS
  high-water mark with glibc's default allocator, which counts freed memory the allocator kept
  too: indicative only, unlike the benchmark's own CPU probes, which run in fresh processes
  that return every large block to the OS).
* ``amp``: for each method, one training step (after a warm-up one) of the distiller under
  mixed precision, fp16 and bf16: on CUDA the config's ``optim_wrapper`` turned into mmengine's
  ``AmpOptimWrapper`` with that ``dtype`` (loss scaling for fp16), as a user's config would; on
  the CPU (rehearsal) ``torch.autocast('cpu', dtype)`` around a plain ``OptimWrapper``, since
  ``AmpOptimWrapper`` refuses the CPU.
* ``resume``: ``tools/train.py`` on generated data, N iterations straight and N/2 + ``--resume``
  to N; the logged losses and the final weights must be equal (``RNGStateHook`` restores the CPU
  and CUDA RNG state); where they differ, a second straight run tells nondeterminism of the
  device from a fault of the resume.
"""

import argparse
import contextlib
import functools
import glob
import json
import logging
import os.path as osp
import tempfile
import time
import traceback
from types import SimpleNamespace
from typing import Dict, Iterator

import torch

REPO = osp.dirname(osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__)))))

METHODS = ('d3etr', 'detrdistill', 'oddetr')
# family -> method -> config: the real R50 students (R101 teachers; DINO: Swin-L), and the tiny ones
REAL_CONFIGS = {
    'conditional': {
        'd3etr': 'configs/d3etr/d3etr_cond-detr-r101_cond-detr-r50_8xb2-50e_coco.py',
        'detrdistill': (
            'configs/detrdistill/detrdistill_cond-detr-r101_cond-detr-r50_8xb2-50e_coco.py'
        ),
        'oddetr': 'configs/oddetr/oddetr_cond-detr-r50_8xb2-50e_coco.py',
    },
    'dab': {
        'd3etr': 'configs/d3etr/d3etr_dab-detr-r101_dab-detr-r50_8xb2-50e_coco.py',
        'detrdistill': (
            'configs/detrdistill/detrdistill_dab-detr-r101_dab-detr-r50_8xb2-50e_coco.py'
        ),
        'oddetr': 'configs/oddetr/oddetr_dab-detr-r50_8xb2-50e_coco.py',
    },
    'deformable': {
        'd3etr': ('configs/d3etr/d3etr_deformable-detr-r101_deformable-detr-r50_16xb2-50e_coco.py'),
        'detrdistill': (
            'configs/detrdistill/'
            'detrdistill_deformable-detr-r101_deformable-detr-r50_16xb2-50e_coco.py'
        ),
        'oddetr': 'configs/oddetr/oddetr_deformable-detr-r50_16xb2-50e_coco.py',
    },
    'dino': {  # mmdet's DINO-4scale R50 student; D3ETR and DETRDistill: Swin-L 5-scale teacher
        'd3etr': 'configs/d3etr/d3etr_dino-5scale-swin-l_dino-4scale-r50_8xb2-12e_coco.py',
        'detrdistill': (
            'configs/detrdistill/detrdistill_dino-5scale-swin-l_dino-4scale-r50_8xb2-12e_coco.py'
        ),
        'oddetr': 'configs/oddetr/oddetr_dino-4scale-r50_8xb2-12e_coco.py',
    },
}
TINY_CONFIGS = {
    'conditional': {
        'd3etr': 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py',
        'detrdistill': 'configs/detrdistill/detrdistill_tiny-t_tiny-s_1xb8-synth.py',
        'oddetr': 'configs/oddetr/oddetr_tiny-s_1xb8-synth.py',
    },
    'dab': {
        'd3etr': 'configs/d3etr/d3etr_tiny-dab-t_tiny-dab-s_1xb8-synth.py',
        'detrdistill': 'configs/detrdistill/detrdistill_tiny-dab-t_tiny-dab-s_1xb8-synth.py',
        'oddetr': 'configs/oddetr/oddetr_tiny-dab-s_1xb8-synth.py',
    },
    'deformable': {
        'd3etr': 'configs/d3etr/d3etr_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py',
        'detrdistill': (
            'configs/detrdistill/detrdistill_tiny-deformable-t_tiny-deformable-s_1xb8-synth.py'
        ),
        'oddetr': 'configs/oddetr/oddetr_tiny-deformable-s_1xb8-synth.py',
    },
    'dino': {
        'd3etr': 'configs/d3etr/d3etr_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
        'detrdistill': 'configs/detrdistill/detrdistill_tiny-dino-t_tiny-dino-s_1xb8-synth.py',
        'oddetr': 'configs/oddetr/oddetr_tiny-dino-s_1xb8-synth.py',
    },
}
CONFIG_SETS = {'real': REAL_CONFIGS, 'tiny': TINY_CONFIGS}
FAMILIES = tuple(REAL_CONFIGS)
AMP_DTYPES = ('float16', 'bfloat16')
RESUME_ITERS = 4  # straight 4; 2, then --resume to 4 (a checkpoint every 2)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('unit', choices=['bench', 'amp', 'resume'])
    parser.add_argument('--families', required=True, help='comma-separated, of ' + str(FAMILIES))
    parser.add_argument('--results', required=True, help='JSON lines are appended here')
    parser.add_argument('--device', default='cuda')
    parser.add_argument('--configs', choices=sorted(CONFIG_SETS), default='real')
    parser.add_argument('--size', type=int, default=800, help='image side in pixels')
    parser.add_argument('--batch', type=int, default=2, help='images per step')
    parser.add_argument('--iters', type=int, default=10, help='timed iterations (bench)')
    parser.add_argument('--methods', default=','.join(METHODS), help='comma-separated')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--warmup', type=int, help="untimed calls (default: the benchmark's)")
    parser.add_argument('--probe-steps', type=int, help='steps per memory probe phase')
    parser.add_argument('--amp-dtypes', default=','.join(AMP_DTYPES), help='comma-separated')
    parser.add_argument('--amp-steps', type=int, default=2, help='steps per dtype; the last timed')
    args = parser.parse_args(argv)
    args.families, args.amp_dtypes = args.families.split(','), args.amp_dtypes.split(',')
    if not set(args.families) <= set(FAMILIES):
        parser.error(f'--families: {args.families} not all in {list(FAMILIES)}')
    return args


def emit(path: str, record: Dict) -> None:
    """Append ``record`` as one JSON line to ``path`` (flushed: it survives a kill)."""
    with open(path, 'a') as f:
        f.write(json.dumps(record) + '\n')


def failure(exc: BaseException) -> str:
    """``Type: message`` of an exception, and the innermost frame of this repo it passed."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.startswith(REPO)]
    where = f' ({osp.relpath(frames[-1].filename, REPO)}:{frames[-1].lineno})' if frames else ''
    return f'{type(exc).__name__}: {str(exc).strip()[:300]}{where}'


@contextlib.contextmanager
def recorded(path: str, record: Dict) -> Iterator[Dict]:
    """Yield ``record`` to fill in; emit it with ``status`` ok, or failed with the error."""
    try:
        yield record
        record.setdefault('status', 'ok')
    except Exception as exc:  # recorded in the table; the next method runs
        traceback.print_exc()
        record['status'] = f'failed: {failure(exc)}'
    emit(path, record)
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def bench(args: argparse.Namespace, config: str, record: Dict) -> None:
    """Fill ``record`` with ``benchmark_step_time``'s measures of ``config``, in this process."""
    from mmdet_detrdistill.testing.step_time import measure_times, memory_probe, ratios

    device = torch.device(args.device)
    opts = SimpleNamespace(
        config=config, size=args.size, batch=args.batch, iters=args.iters, seed=args.seed,
        solver_threads=None, device=args.device,
    )  # fmt: skip
    times = measure_times(opts, device, args.warmup)
    memory = {}
    for side in ('student', 'distill'):
        opts.memory_probe = side
        # no warm-up of a fresh process: measure_times ran the same code in this one
        memory[side] = memory_probe(opts, device, warmup=False, steps=args.probe_steps)
    record.update(times=times, memory=memory, ratios=ratios(times, memory))
    record['solver_threads'] = opts.solver_threads_used


class CpuAutocastOptimWrapper:
    """The CPU stand-in of ``AmpOptimWrapper`` (rehearsal): ``optim_context`` adds
    ``torch.autocast('cpu', dtype)`` to the wrapped ``OptimWrapper``'s; no loss scaling."""

    def __init__(self, wrapper, dtype: torch.dtype) -> None:
        self.wrapper, self.dtype = wrapper, dtype

    def __getattr__(self, name: str):
        return getattr(self.wrapper, name)

    @contextlib.contextmanager
    def optim_context(self, model: torch.nn.Module) -> Iterator[None]:
        with self.wrapper.optim_context(model), torch.autocast('cpu', dtype=self.dtype):
            yield


def amp_optim_wrapper(config: str, model: torch.nn.Module, dtype: str, device: torch.device):
    """The config's ``optim_wrapper`` under mixed precision in ``dtype``: ``AmpOptimWrapper``
    on CUDA (as ``optim_wrapper.type='AmpOptimWrapper'`` in a config), else the CPU stand-in."""
    from mmengine.config import Config
    from mmengine.optim import build_optim_wrapper

    cfg = Config.fromfile(config).optim_wrapper
    if device.type == 'cuda':
        cfg.update(type='AmpOptimWrapper', dtype=dtype)
        return build_optim_wrapper(model, cfg)
    return CpuAutocastOptimWrapper(build_optim_wrapper(model, cfg), getattr(torch, dtype))


def packed_batch(model: torch.nn.Module, args: argparse.Namespace) -> Dict:
    """An unprocessed batch (as a dataloader gives it) of random images, five boxes each."""
    from mmdet.testing import demo_mm_inputs

    torch.manual_seed(args.seed)
    student = getattr(model, 'student', model)
    return demo_mm_inputs(
        batch_size=args.batch,
        image_shapes=[(3, args.size, args.size)] * args.batch,
        num_items=[5] * args.batch,
        num_classes=student.bbox_head.num_classes,
    )


def amp(args: argparse.Namespace, config: str, record: Dict, path: str) -> None:
    """``--amp-steps`` ``train_step`` calls of the distiller per dtype (the last one timed: by
    default after one warm-up); one record each."""
    from mmdet_detrdistill.testing.step_time import build_distiller, synchronize

    device = torch.device(args.device)
    torch.manual_seed(args.seed)
    distiller = build_distiller(config, device)
    data = packed_batch(distiller, args)
    for dtype in args.amp_dtypes:
        with recorded(path, dict(record, dtype=dtype)) as rec:
            wrapper = amp_optim_wrapper(config, distiller, dtype, device)
            times, losses = [], {}
            for _ in range(args.amp_steps):
                synchronize(device)
                start = time.perf_counter()
                losses = distiller.train_step(data, wrapper)  # preprocess, autocast, update
                synchronize(device)
                times.append(time.perf_counter() - start)
            loss = torch.as_tensor(losses['loss']).item()  # the sum of every loss term
            scaler = getattr(wrapper, 'loss_scaler', None)
            rec.update(
                loss=loss,
                finite=bool(torch.isfinite(torch.tensor(loss))),
                step=times[-1],
                loss_scale=None if scaler is None else float(scaler.get_scale()),
                params_finite=all(torch.isfinite(p).all().item() for p in distiller.parameters()),
            )
            if not (rec['finite'] and rec['params_finite']):
                rec['status'] = 'failed: a loss or a weight is not finite'


def _train(config: str, work_dir: str, data_root: str, iters: int, *extra: str) -> None:
    from mmdet_detrdistill.testing import run_tool, synth_train_options

    external_teacher = 'oddetr' not in osp.basename(config)  # OD-DETR: the student's EMA
    options = synth_train_options(data_root, iters, external_teacher=external_teacher)
    options += ['train_cfg.val_interval=100']
    run = run_tool(['tools/train.py', config, '--work-dir', work_dir, *extra], options)
    if run.returncode != 0:
        raise RuntimeError(f'tools/train.py failed:\n{(run.stdout + run.stderr)[-2000:]}')


def _losses(work_dir: str) -> Dict[int, float]:
    """Every logged training loss, by iteration (MMEngine's ``scalars.json``)."""
    losses = {}
    for path in glob.glob(osp.join(work_dir, '*', 'vis_data', 'scalars.json')):
        with open(path) as f:
            for rec in map(json.loads, f):
                if 'loss' in rec:
                    losses[rec['iter']] = rec['loss']
    return losses


def _weights(work_dir: str, iters: int) -> Dict[str, torch.Tensor]:
    ckpt = torch.load(
        osp.join(work_dir, f'iter_{iters}.pth'), map_location='cpu', weights_only=False
    )
    return ckpt['state_dict']


def _differences(a: str, b: str, iters: int) -> Dict:
    """Largest loss and weight differences between the runs in work dirs ``a`` and ``b``."""
    la, lb = _losses(a), _losses(b)
    if sorted(la) != sorted(lb) or len(la) != iters:
        raise RuntimeError(f'logged iterations differ: {sorted(la)} vs {sorted(lb)}')
    wa, wb = _weights(a, iters), _weights(b, iters)
    return dict(
        loss=max(abs(la[i] - lb[i]) for i in la),
        weight=max((wa[k].double() - wb[k].double()).abs().max().item() for k in wa),
    )


def resume(args: argparse.Namespace, config: str, record: Dict) -> None:
    """N iterations straight against N/2 + ``--resume`` to N, on generated data."""
    from mmdet_detrdistill.datasets import make_synthetic_coco

    with tempfile.TemporaryDirectory() as tmp:
        data_root = osp.join(tmp, 'data')
        make_synthetic_coco(data_root, 8, 2, img_size=96, verbose=False)
        runs = {name: osp.join(tmp, name) for name in ('straight', 'resumed', 'again')}
        _train(config, runs['straight'], data_root, RESUME_ITERS)
        _train(config, runs['resumed'], data_root, RESUME_ITERS // 2)
        _train(config, runs['resumed'], data_root, RESUME_ITERS, '--resume')
        diff = _differences(runs['straight'], runs['resumed'], RESUME_ITERS)
        record.update(iters=RESUME_ITERS, diff=diff, exact=diff['loss'] == diff['weight'] == 0)
        if not record['exact']:  # is the device itself nondeterministic?
            _train(config, runs['again'], data_root, RESUME_ITERS)
            record['repeat_diff'] = _differences(runs['straight'], runs['again'], RESUME_ITERS)
        record['cuda_rng_saved'] = torch.cuda.is_available()


def quiet_and_cached_configs() -> None:
    """Speed this worker up, without changing what it computes. mmengine resolves every
    ``mmdet::`` base config by parsing all of mmdet's metafiles (about 100 YAML files) and
    checks that mmdet is installed by reloading ``pkg_resources``, on each ``Config.fromfile``
    (1-2 s, about ten times per measured config): remember both in this process. And log
    warnings only (the optimizer's per-parameter settings are logged at every build)."""
    from mmengine.config import config, utils
    from mmengine.logging import MMLogger

    utils.load = functools.lru_cache(maxsize=None)(utils.load)  # read-only use there
    config.is_installed = functools.lru_cache(maxsize=None)(config.is_installed)
    MMLogger.get_current_instance().setLevel(logging.WARNING)


def run_family(args: argparse.Namespace, family: str) -> None:
    """Every method of ``family`` (resume: one config), each recorded on its own."""
    configs = CONFIG_SETS[args.configs][family]
    if args.unit == 'resume':  # tiny: the RNG state is what is checked, not the model
        config = TINY_CONFIGS[family]['d3etr']
        with recorded(args.results, dict(unit='resume', family=family, config=config)) as r:
            resume(args, config, r)
        return
    for method in args.methods.split(','):
        record = dict(unit=args.unit, family=family, method=method, config=configs[method])
        if args.unit == 'bench':
            with recorded(args.results, record) as rec:
                bench(args, configs[method], rec)
            continue
        try:
            amp(args, configs[method], record, args.results)
        except Exception as exc:  # the build failed: every dtype fails
            traceback.print_exc()
            for dtype in args.amp_dtypes:
                emit(args.results, dict(record, dtype=dtype, status=f'failed: {failure(exc)}'))


def main(argv=None) -> None:
    args = parse_args(argv)
    from mmdet.utils import register_all_modules

    from mmdet_detrdistill.testing import step_time

    register_all_modules()
    quiet_and_cached_configs()
    if args.warmup is None:  # a rehearsal gives fewer untimed calls
        args.warmup = step_time.WARMUP
    if args.probe_steps is None:
        args.probe_steps = step_time.PROBE_STEPS
    for family in args.families:
        run_family(args, family)


if __name__ == '__main__':
    main()
