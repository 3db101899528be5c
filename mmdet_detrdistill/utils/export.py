"""Export the student of a distiller checkpoint as a plain MMDetection checkpoint + config."""

import ast
import os
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .checkpoint import get_raw_state_dict, load_checkpoint_file, save_checkpoint_atomically
from .plain_config import plain_mmdet_config

STUDENT_PREFIX = 'student.'
_META_KEYS = ('epoch', 'iter', 'seed', 'experiment_name', 'time', 'mmengine_version')
_CONSTANT_NAMES = {'True': True, 'False': False, 'None': None}


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


def _literal(node: ast.AST) -> Any:
    """Evaluate a config expression made only of literals and ``dict(key=...)`` calls."""
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in _CONSTANT_NAMES:
        return _CONSTANT_NAMES[node.id]
    if isinstance(node, (ast.List, ast.Tuple)):
        items = [_literal(e) for e in node.elts]
        return tuple(items) if isinstance(node, ast.Tuple) else items
    if isinstance(node, ast.Dict) and None not in node.keys:
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _literal(node.operand)
        if isinstance(operand, (int, float)):
            return -operand if isinstance(node.op, ast.USub) else operand
    is_dict_call = isinstance(node, ast.Call) and getattr(node.func, 'id', None) == 'dict'
    if is_dict_call and not node.args and all(kw.arg for kw in node.keywords):
        return {kw.arg: _literal(kw.value) for kw in node.keywords}
    raise ValueError(f'non-literal expression at line {getattr(node, "lineno", "?")}')


def parse_config_text(text: str) -> Dict[str, Any]:
    """Parse MMEngine's ``pretty_text`` config WITHOUT executing it.

    ``Config.fromstring`` would ``exec`` the text, i.e. run code from the checkpoint; this
    accepts only ``name = <literal>`` statements.

    Raises:
        ValueError: The text holds anything other than literal assignments.
    """
    cfg: Dict[str, Any] = {}
    for stmt in ast.parse(text).body:
        if not (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ):
            raise ValueError(f'non-assignment statement at line {stmt.lineno}')
        cfg[stmt.targets[0].id] = _literal(stmt.value)
    return cfg


def student_config_text(cfg_text: str) -> str:
    """Turn a distiller training config into a plain-mmdet config of its student.

    ``model`` becomes ``model['student']``; every hook, optimizer constructor, type and import
    of this package is mapped back to MMDetection's or dropped (:func:`plain_mmdet_config`);
    ``load_from`` / ``resume`` are reset (they pointed at the teacher / distiller checkpoints).

    Raises:
        ValueError: The config is not literal-only, has no ``model['student']`` dict, or holds
            a type of this package that plain mmdet has no equivalent for.
    """
    from mmengine.config import Config

    cfg = parse_config_text(cfg_text)
    student = cfg.get('model', {}).get('student') if isinstance(cfg.get('model'), dict) else None
    if not isinstance(student, dict) or 'type' not in student:
        raise ValueError("the config has no model['student'] dict with a 'type'")
    from ..models.detectors import GROUP_DETECTORS  # lazy: models import utils

    # the distiller builds its student as our group subclass (e.g. GroupConditionalDETR): seen
    # as that type, the options of ours (fold_group_self_attention) are dropped with it
    cfg['model'] = dict(student, type=GROUP_DETECTORS.get(student['type'], student['type']))
    cfg, _ = plain_mmdet_config(cfg)
    cfg.update(load_from=None, resume=False)
    return Config(cfg).pretty_text


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


def _student_state_dict(checkpoint: Dict[str, Any], filename: str) -> Dict[str, torch.Tensor]:
    """Keep only ``student.*`` tensors, prefix removed, as contiguous clones."""
    state = get_raw_state_dict(checkpoint, filename)
    student = {
        k[len(STUDENT_PREFIX) :]: v.detach().cpu().contiguous().clone()
        for k, v in state.items()
        if k.startswith(STUDENT_PREFIX)
    }
    if not student:
        prefixes = sorted({k.split('.', 1)[0] for k in state})[:5]
        raise ValueError(
            f"checkpoint {filename!r} holds no student weights (no 'student.' keys; top-level "
            f'prefixes: {", ".join(prefixes)}) - is it a distiller checkpoint? A plain detector '
            'checkpoint can be used with mmdet directly.'
        )
    return student


def export_student(checkpoint: str, out: str) -> Tuple[str, Optional[str]]:
    """Export the student of a distiller Runner checkpoint for vanilla mmdet.

    Writes ``{'meta': {...}, 'state_dict': {...}}`` holding only plain python types and tensors,
    so ``torch.load(out, weights_only=True)`` works without this package. If the checkpoint
    stores its training config (``meta['cfg']``), also writes ``<out stem>_config.py``.

    Args:
        checkpoint: Path of the distiller checkpoint.
        out: Path of the exported checkpoint.

    Returns:
        ``(out, config_path)``; ``config_path`` is None if no config could be written.

    Raises:
        FileNotFoundError: ``checkpoint`` does not exist.
        ValueError: It is unreadable/unsafe, holds no student weights, or ``out`` is the input.
    """
    checkpoint, out = os.fspath(checkpoint), os.fspath(out)
    if os.path.exists(out) and os.path.samefile(checkpoint, out):
        raise ValueError(f'output {out!r} is the input checkpoint; choose another path')
    ckpt = load_checkpoint_file(checkpoint)
    state = _student_state_dict(ckpt, checkpoint)
    old_meta = ckpt.get('meta') if isinstance(ckpt.get('meta'), dict) else {}
    meta = {k: to_plain(old_meta[k]) for k in _META_KEYS if k in old_meta}
    if isinstance(old_meta.get('dataset_meta'), dict):
        meta['dataset_meta'] = to_plain(old_meta['dataset_meta'])
    meta.update(exported_from=checkpoint, exported_by='mmdet_detrdistill.export_student')

    config_path = None
    if isinstance(old_meta.get('cfg'), str):
        try:
            config_text = student_config_text(old_meta['cfg'])
            config_path = f'{os.path.splitext(out)[0]}_config.py'
        except (SyntaxError, ValueError) as err:
            warnings.warn(f'no student config written for {checkpoint!r}: {err}', stacklevel=2)
    save_checkpoint_atomically({'meta': meta, 'state_dict': state}, out)
    _chmod_as_new_file(out)
    if config_path is not None:
        _write_text_atomically(config_text, config_path)
    return out, config_path
