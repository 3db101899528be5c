"""Train a detector or a distiller: mmdet's ``tools/train.py`` CLI, with this package loaded.

python tools/train.py CONFIG [--work-dir DIR] [--amp] [--auto-scale-lr]
                             [--resume [CHECKPOINT]] [--cfg-options KEY=VALUE ...]
                             [--launcher {none,pytorch,slurm,mpi}]

What a run needs (``custom_imports``, the runtime hooks) comes from the config
(``configs/_base_/distill_runtime.py``), never from this script, so mmdet's own ``tools/train.py``
trains the same; this one adds distributed runs without a GPU (gloo: ``setup_cpu_distributed``).
"""

import argparse
import os
import os.path as osp

from mmdet.utils import setup_cache_size_limit_of_dynamo
from mmengine.config import Config, DictAction
from mmengine.registry import RUNNERS
from mmengine.runner import Runner

import mmdet_detrdistill  # noqa: F401  (registers our modules, safe checkpoint loading)
from mmdet_detrdistill.utils.cpu_distributed import (
    close_distributed,
    end_cpu_distributed_process,
    setup_cpu_distributed,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a detector or a distiller')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument('--amp', action='store_true', help='enable automatic mixed precision')
    parser.add_argument('--auto-scale-lr', action='store_true', help='scale lr by batch size')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from CHECKPOINT, or from the latest checkpoint in the work dir if no '
        'path is given',
    )
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config settings, e.g. model.teacher_ckpt=PATH',
    )
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher',
    )
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def build_cfg(args: argparse.Namespace) -> Config:
    """The config with the command line applied, as mmdet's train.py does."""
    if not osp.isfile(args.config):
        raise SystemExit(f'error: config file not found: {args.config}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        if 'auto_scale_lr' not in cfg or 'base_batch_size' not in cfg.auto_scale_lr:
            raise SystemExit(
                'error: --auto-scale-lr needs `auto_scale_lr.base_batch_size` in the config'
            )
        cfg.auto_scale_lr.enable = True
    if args.resume == 'auto':
        cfg.resume, cfg.load_from = True, None
    elif args.resume is not None:
        cfg.resume, cfg.load_from = True, args.resume
    return cfg


def main() -> None:
    args = parse_args()
    setup_cache_size_limit_of_dynamo()
    cfg = build_cfg(args)
    cpu_distributed = setup_cpu_distributed(cfg)  # gloo + device_ids=None without a GPU
    runner = Runner.from_cfg(cfg) if 'runner_type' not in cfg else RUNNERS.build(cfg)
    runner.train()
    if cpu_distributed:
        end_cpu_distributed_process()  # see its docstring: torch aborts at teardown
    close_distributed()  # on success only: every rank must reach it


if __name__ == '__main__':
    main()
