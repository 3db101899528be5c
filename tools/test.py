"""Test a detector or a distiller (which predicts with its student): mmdet's
``tools/test.py`` CLI, with this package loaded.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out results.pkl]
                         [--show-dir DIR] [--cfg-options ...] [--launcher ...]

For a distiller CONFIG, CHECKPOINT may be a distiller checkpoint or a plain checkpoint of its
student; the teacher's checkpoint is not read (a distiller loads it only when training
starts), so it need not exist here. mmdet's own tools/test.py behaves the same. An OD-DETR
distiller's EMA model is evaluated after its student (``ema/`` metrics) with
``--cfg-options test_cfg.type=StudentAndEMATestLoop``.
"""

import argparse
import os
import os.path as osp

from mmdet.evaluation import DumpDetResults
from mmengine.config import Config, DictAction
from mmengine.runner import Runner

import mmdet_detrdistill  # noqa: F401
from mmdet_detrdistill.utils.cpu_distributed import (
    close_distributed,
    end_cpu_distributed_process,
    setup_cpu_distributed,
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Test (and evaluate) a model')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file')
    parser.add_argument('--work-dir', help='the dir to save evaluation metrics')
    parser.add_argument('--out', help='dump predictions to a pickle file for offline eval')
    parser.add_argument('--show-dir', help='save painted images to this dir (in work_dir)')
    parser.add_argument(
        '--cfg-options', nargs='+', action=DictAction, help='override config settings'
    )
    parser.add_argument('--launcher', choices=['none', 'pytorch', 'slurm', 'mpi'], default='none')
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args()
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def main() -> None:
    args = parse_args()
    for path, what in ((args.config, 'config'), (args.checkpoint, 'checkpoint')):
        if not osp.isfile(path):
            raise SystemExit(f'error: {what} file not found: {path}')
    cfg = Config.fromfile(args.config)
    cfg.launcher = args.launcher
    if args.cfg_options is not None:
        cfg.merge_from_dict(args.cfg_options)
    if args.work_dir is not None:
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir') is None:
        cfg.work_dir = osp.join('./work_dirs', osp.splitext(osp.basename(args.config))[0])
    cfg.load_from = args.checkpoint
    cpu_distributed = setup_cpu_distributed(cfg)  # gloo + device_ids=None without a GPU
    if args.show_dir:
        vis = cfg.default_hooks.visualization
        vis.update(draw=True, test_out_dir=args.show_dir)
    runner = Runner.from_cfg(cfg)
    if args.out is not None:
        if not args.out.endswith(('.pkl', '.pickle')):
            raise SystemExit('error: --out must be a .pkl file')
        runner.test_evaluator.metrics.append(DumpDetResults(out_file_path=args.out))
    runner.test()
    if cpu_distributed:
        end_cpu_distributed_process()  # see its docstring: torch aborts at teardown
    close_distributed()  # on success only: every rank must reach it


if __name__ == '__main__':
    main()
