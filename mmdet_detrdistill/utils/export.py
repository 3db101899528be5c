"""Export the student of a distiller checkpoint as a plain MMDetection checkpoint + config.

This is the checkpoint side (which weights, the outputs); the config written next to it comes
from :func:`~.export_config.student_config_text`.
"""

import os
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .checkpoint import get_raw_state_dict, load_checkpoint_file, save_checkpoint_atomically
from .export_config import student_config_text

STUDENT_PREFIX = 'student.'
EMA_PREFIX = 'ema_teacher.module.'  # OD-DETR's EMA model (ODDETRDistiller.ema_model)
_META_KEYS = ('epoch', 'iter', 'seed', 'experiment_name', 'time', 'mmengine_version')


def to_plain(value: Any) -> Any:
    """Convert numpy/torch values inside nested containers to plain python types.

    Anything else that is not a str/int/float/bool/None is converted with ``str``, so the result
    always loads with ``torch.load(weights_only=True)`` and no extra allow-listed globals.
    """
    if isinstance(value, dict):
        return {to_plain(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        items = [to_plain(v) for v in value]
        return tuple(items) if isinstance(value, tuple) else items
    if isinstance(value, (np.ndarray, np.generic, torch.Tensor)):
        return to_plain(value.tolist())
    if value is None:
        return None
    for base in (bool, int, float, str):  # exact builtin types: subclasses need globals
        if isinstance(value, base):
            return base(value)
    return str(value)


def _write_text_atomically(text: str, filename: str) -> None:
    """Write ``text`` to a temp file next to ``filename`` and rename it into place."""
    tmp = f'{filename}.tmp{os.getpid()}'
    try:
        with open(tmp, 'w', encoding='utf-8') as f:
            f.write(text)
        os.replace(tmp, filename)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _chmod_as_new_file(filename: str) -> None:
    """Give ``filename`` the mode ``open()`` gives a new file (0666 minus the umask), not the
    0600 of the temporary file it was written to: as readable as the exported config."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(filename, 0o666 & ~umask)


def _prefixed(state: Dict[str, Any], prefix: str) -> Dict[str, torch.Tensor]:
    """The tensors under ``prefix``, prefix removed, as contiguous CPU clones."""
    return {
        k[len(prefix) :]: v.detach().cpu().contiguous().clone()
        for k, v in state.items()
        if k.startswith(prefix)
    }


def _student_state_dict(checkpoint: Dict[str, Any], filename: str) -> Dict[str, torch.Tensor]:
    """Keep only ``student.*`` tensors, prefix removed, as contiguous clones."""
    state = get_raw_state_dict(checkpoint, filename)
    student = _prefixed(state, STUDENT_PREFIX)
    if not student:
        prefixes = sorted({k.split('.', 1)[0] for k in state})[:5]
        raise ValueError(
            f"checkpoint {filename!r} holds no student weights (no 'student.' keys; top-level "
            f'prefixes: {", ".join(prefixes)}) - is it a distiller checkpoint? A plain detector '
            'checkpoint can be used with mmdet directly.'
        )
    return student


def _ema_state_dict(checkpoint: Dict[str, Any], filename: str) -> Dict[str, torch.Tensor]:
    """Keep only the EMA model's tensors (``ema_teacher.module.*``), prefix removed.

    Raises:
        ValueError: There are none (not an OD-DETR checkpoint), or they are not the tensors of
            the student's architecture (whose config is exported with them).
    """
    state = get_raw_state_dict(checkpoint, filename)
    ema = _prefixed(state, EMA_PREFIX)
    if not ema:
        raise ValueError(
            f'checkpoint {filename!r} holds no EMA weights (no {EMA_PREFIX!r} keys): it is not '
            'an OD-DETR (ODDETRDistiller) checkpoint. Export its student without --ema '
            '(ema=False in Python).'
        )
    student = {k[len(STUDENT_PREFIX) :] for k in state if k.startswith(STUDENT_PREFIX)}
    if student and set(ema) != student:
        odd = sorted(set(ema) ^ student)[:3]
        raise ValueError(
            f"checkpoint {filename!r}: the EMA model's tensors are not the student's (e.g. "
            f'{", ".join(odd)}), so the student config does not describe it; nothing was written'
        )
    return ema


def student_config_path(out: str) -> str:
    """Path of the student config written next to the exported checkpoint ``out``."""
    return f'{os.path.splitext(out)[0]}_config.py'


def _check_outputs(checkpoint: str, out: str, config_path: str, force: bool) -> None:
    """Refuse outputs that are directories, the input, or (unless ``force``) existing files.

    Raises:
        IsADirectoryError: ``out`` or ``config_path`` is a directory.
        ValueError: ``out`` or ``config_path`` is the input checkpoint.
        FileExistsError: ``out`` or ``config_path`` exists and ``force`` is False.
    """
    if os.path.isdir(out) or out.endswith(tuple(filter(None, (os.sep, os.altsep)))):
        raise IsADirectoryError(
            f'output {out!r} is a directory; give the path of the exported checkpoint file, '
            f'e.g. {os.path.join(out, "student.pth")!r}'
        )
    if os.path.isdir(config_path):
        raise IsADirectoryError(
            f'{config_path!r} (where the student config of {out!r} goes) is a directory; '
            'choose another output path'
        )
    for path in (out, config_path):
        if (
            os.path.exists(path)
            and os.path.exists(checkpoint)
            and os.path.samefile(checkpoint, path)
        ):
            raise ValueError(f'output {path!r} is the input checkpoint; choose another path')
    existing = [path for path in (out, config_path) if os.path.lexists(path)]
    if existing and not force:
        raise FileExistsError(
            f'{" and ".join(map(repr, existing))} already exist{"s" * (len(existing) == 1)}; '
            'nothing was written. Choose another output path, or pass --force (force=True in '
            'Python) to overwrite.'
        )


def export_student(
    checkpoint: str, out: str, force: bool = False, ema: bool = False
) -> Tuple[str, Optional[str]]:
    """Export the student (or OD-DETR's EMA model) of a distiller Runner checkpoint for mmdet.

    Writes ``{'meta': {...}, 'state_dict': {...}}`` holding only plain python types and tensors,
    so ``torch.load(out, weights_only=True)`` works without this package. If the checkpoint
    stores its training config (``meta['cfg']``), also writes ``<out stem>_config.py``
    (:func:`student_config_text`; ``work_dir``, ``load_from`` and ``resume`` reset). The stored
    config is data, never executed: if it is not a plain literal config (code, keys that
    mmengine would not write as themselves, ...), no config is written, a warning says why, and
    the checkpoint is still exported.

    All outputs are checked before anything is written: nothing is written if one fails.

    Args:
        checkpoint: Path of the distiller checkpoint.
        out: Path of the exported checkpoint (a file, not a directory).
        force: Overwrite ``out`` and ``<out stem>_config.py`` if they exist.
        ema: Export OD-DETR's EMA model (``ema_teacher.module.*``) instead of the student
            (``student.*``): the same architecture, so the same config. Defaults to False.

    Returns:
        ``(out, config_path)``; ``config_path`` is None if no config could be written.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        IsADirectoryError: ``out`` (or ``<out stem>_config.py``) is a directory.
        FileExistsError: ``out`` or ``<out stem>_config.py`` exists and ``force`` is False.
        ValueError: It is unreadable/unsafe, holds no student weights (with ``ema``: no EMA
            weights, i.e. it is not an OD-DETR checkpoint), or an output is the input.
    """
    checkpoint, out = os.fspath(checkpoint), os.fspath(out)
    config_path = student_config_path(out)
    _check_outputs(checkpoint, out, config_path, force)
    ckpt = load_checkpoint_file(checkpoint)
    state = (_ema_state_dict if ema else _student_state_dict)(ckpt, checkpoint)
    old_meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = {k: to_plain(old_meta[k]) for k in _META_KEYS if k in old_meta}
    if isinstance(old_meta.get('dataset_meta'), dict):
        meta['dataset_meta'] = to_plain(old_meta['dataset_meta'])
    meta.update(
        exported_from=checkpoint,
        exported_by='mmdet_detrdistill.export_student',
        exported_model='ema' if ema else 'student',
    )

    config_text = None
    if isinstance(old_meta.get('cfg'), str):
        try:
            config_text = student_config_text(old_meta['cfg'])
        except (SyntaxError, ValueError, RecursionError) as err:
            warnings.warn(f'no student config written for {checkpoint!r}: {err}', stacklevel=2)
    if config_text is None and os.path.lexists(config_path):
        warnings.warn(
            f'{config_path!r} is left from an earlier export and is not the config of this '
            'checkpoint: delete or replace it',
            stacklevel=2,
        )
    save_checkpoint_atomically({'meta': meta, 'state_dict': state}, out)
    _chmod_as_new_file(out)
    if config_text is None:
        return out, None
    _write_text_atomically(config_text, config_path)
    return out, config_path
