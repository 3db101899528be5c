"""Export the student of a distiller checkpoint (or OD-DETR's EMA model) as a plain MMDetection
checkpoint.

Example::

    python tools/model_converters/export_student.py work_dirs/distill/iter_10000.pth student.pth
    python tools/model_converters/export_student.py RUN/iter_10000.pth student.pth --force
    python tools/model_converters/export_student.py ODDETR_RUN/epoch_50.pth ema.pth --ema

The config stored in the checkpoint is data: it is parsed, never executed, and the student
config is written only if it is a plain literal config that reads back as itself.
"""

import argparse
import sys
import warnings
from typing import List, Optional

EXPECTED_ERRORS = (
    FileExistsError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
    ValueError,
)


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    """Parse the command line."""
    parser = argparse.ArgumentParser(
        description='Keep only the student weights (the "student." keys, prefix removed) of a '
        'checkpoint written while training a distiller, so that plain mmdet can load it. If the '
        'checkpoint stores its training config, a student-only config <OUT stem>_config.py is '
        'written next to OUT (work_dir, load_from and resume reset); it is never executed, and '
        'if it is not a plain literal config only the checkpoint is exported. No config file '
        'is needed. Nothing is overwritten without --force.'
    )
    parser.add_argument('checkpoint', help='distiller checkpoint (.pth) written by the Runner')
    parser.add_argument('out', help='path of the exported student checkpoint file (.pth)')
    parser.add_argument(
        '--force',
        action='store_true',
        help='overwrite OUT and <OUT stem>_config.py if they exist (without it, export refuses '
        'and writes nothing)',
    )
    parser.add_argument(
        '--ema',
        action='store_true',
        help='export OD-DETR\'s EMA model (the "ema_teacher.module." keys) instead of the '
        'student: same architecture, same config; refused for a checkpoint that has none',
    )
    return parser.parse_args(argv)


def main(argv: Optional[List[str]] = None) -> int:
    """Run the export; return the process exit code."""
    args = parse_args(argv)
    import torch

    from mmdet_detrdistill.utils.export import export_student

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter('always')
            out, config_path = export_student(
                args.checkpoint, args.out, force=args.force, ema=args.ema
            )
    except EXPECTED_ERRORS as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    for warning in caught:
        print(f'warning: {warning.message}', file=sys.stderr)
    num_tensors = len(torch.load(out, map_location='cpu', weights_only=True)['state_dict'])
    print(f'wrote {out} ({num_tensors} {"EMA model" if args.ema else "student"} tensors)')
    if config_path is None:
        print(
            'no student config written (the checkpoint stores no usable plain training config, '
            'see the warning): write one for the student by hand'
        )
        config_path = '<student config>'
    else:
        print(f'wrote {config_path} (student-only config: no type, hook or import of this package)')
    print(
        f'test it with plain mmdet (without this package): python tools/test.py {config_path} '
        f"{out} in an mmdet checkout, or mmdet.apis.init_detector('{config_path}', '{out}')"
    )
    return 0


if __name__ == '__main__':
    sys.exit(main())
