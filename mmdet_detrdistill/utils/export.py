"""Export the student of a distiller checkpoint as a plain MMDetection checkpoint + config."""

import ast
import keyword
import math
import os
import unicodedata
import warnings
from typing import Any, Dict, Optional, Tuple

import numpy as np
import torch

from .checkpoint import get_raw_state_dict, load_checkpoint_file, save_checkpoint_atomically
from .plain_config import plain_mmdet_config

STUDENT_PREFIX = 'student.'
EMA_PREFIX = 'ema_teacher.module.'  # OD-DETR's EMA model (ODDETRDistiller.ema_model)
_META_KEYS = ('epoch', 'iter', 'seed', 'experiment_name', 'time', 'mmengine_version')
_CONSTANT_NAMES = {'True': True, 'False': False, 'None': None}
# top-level names that mmengine's Config.fromfile treats specially: '_base_' loads other files,
# '_deprecation_' is popped, the reserved ones are refused, '__*' names are dropped
_SPECIAL_TOP_LEVEL = ('_base_', '_deprecation_', 'filename', 'text', 'pretty_text', 'env_variables')
_NOT_PLAIN = (
    "the checkpoint's stored config is not a plain config: {problem}. No config is exported "
    'for it (only the checkpoint): write the student config by hand, e.g. from the training '
    "config's model.student."
)


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
    # pretty_text writes a dict with a non-identifier key inside a list as dict({...})
    if is_dict_call and not node.keywords and len(node.args) == 1:
        if isinstance(node.args[0], ast.Dict):
            return _literal(node.args[0])
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


def _short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)``, shortened to about ``limit`` characters for an error message."""
    text = repr(value)
    return text if len(text) <= limit else f'{text[: limit - 4]}...{text[-1]}'


def _key_path(path: str, key: Any) -> str:
    """``path.key`` for an identifier key, else ``path[<repr of key>]``."""
    if isinstance(key, str) and key.isidentifier() and not keyword.iskeyword(key):
        return f'{path}.{key}' if path else key
    return f'{path}[{_short_repr(key)}]'


def _key_problem(key: Any) -> Optional[str]:
    """Why mmengine's ``pretty_text`` cannot write ``key`` so that it reads back as itself.

    A plain key is an ``int`` (not a bool) or a ``str`` that is either a Python identifier (not
    a keyword, unchanged by NFKC normalisation: written as ``dict(key=...)``) or printable text
    without quotes or backslashes (written as ``'key': ...``, unescaped by mmengine).

    Returns:
        None for a plain key, else what is wrong with it.
    """
    if type(key) is int:
        return None
    if type(key) is not str:
        return f'is a {type(key).__name__} key (only str and int keys are plain)'
    if keyword.iskeyword(key):
        return 'is a key that is a Python keyword'
    if key.isidentifier():
        if unicodedata.normalize('NFKC', key) != key:
            return 'is an identifier key that Python would read as another name (NFKC)'
        return None
    if not key.isprintable() or "'" in key or '\\' in key:
        return (
            'is a key holding a single quote, backslash or non-printable character, which '
            'mmengine writes into the config file unescaped (it could run code)'
        )
    return None


def _value_problem(value: Any) -> Optional[str]:
    """Why a leaf value would not be written as itself; None if it would."""
    if isinstance(value, str) and '{{' in value:
        return "holds '{{', which mmengine's Config.fromfile substitutes in the file's text"
    if isinstance(value, float) and not math.isfinite(value):
        return f'is {value}, which pretty_text writes as a name, not a number'
    return None


def _check_plain(value: Any, path: str) -> None:
    """Refuse any key or value below ``value`` that would not be written as itself.

    Raises:
        ValueError: Names the key path and what is wrong.
    """
    if isinstance(value, dict):
        for key, item in value.items():
            sub = _key_path(path, key)
            problem = _key_problem(key) or _value_problem(key)
            if problem is not None:
                raise ValueError(_NOT_PLAIN.format(problem=f'{sub} {problem}'))
            _check_plain(item, sub)
    elif isinstance(value, (list, tuple)):
        for index, item in enumerate(value):
            _check_plain(item, f'{path}[{index}]')
    else:
        problem = _value_problem(value)
        if problem is not None:
            raise ValueError(_NOT_PLAIN.format(problem=f'{path} {problem}'))


def _check_top_level(cfg: Dict[str, Any]) -> None:
    """Refuse top-level names that ``Config.fromfile`` would not read back as plain values."""
    for name in cfg:
        if name in _SPECIAL_TOP_LEVEL or name.startswith('__'):
            problem = f'{name} is a name that mmengine treats specially when loading a config'
            if name == '_base_':
                problem += ' (it would load and run other config files)'
            raise ValueError(_NOT_PLAIN.format(problem=problem))


def _first_difference(meant: Any, written: Any, path: str) -> Optional[str]:
    """The key path where ``written`` differs from ``meant`` (types too); None if equal."""
    if type(meant) is not type(written):
        return path
    if isinstance(meant, dict):
        for key in [*meant, *(k for k in written if k not in meant)]:
            sub = _key_path(path, key)
            if key not in meant or key not in written:
                return sub
            diff = _first_difference(meant[key], written[key], sub)
            if diff is not None:
                return diff
        return None
    if isinstance(meant, (list, tuple)):
        if len(meant) != len(written):
            return path
        for index, (a, b) in enumerate(zip(meant, written)):
            diff = _first_difference(a, b, f'{path}[{index}]')
            if diff is not None:
                return diff
        return None
    return None if meant == written else path


def _checked_pretty_text(cfg: Dict[str, Any]) -> str:
    """``Config(cfg).pretty_text``, after checking that it reads back as exactly ``cfg``.

    The text is parsed again without executing it (:func:`parse_config_text`) and compared with
    ``cfg``, so what is written is only literal assignments of the values that were meant.

    Raises:
        ValueError: A key or value of ``cfg`` is not plain, or the text is not ``cfg``.
    """
    from mmengine.config import Config

    _check_top_level(cfg)
    _check_plain(cfg, '')
    try:
        text = Config(cfg).pretty_text
        written = parse_config_text(text)
    except (SyntaxError, ValueError, KeyError) as err:
        reason = next(iter(str(err).splitlines()), type(err).__name__)  # not the whole text
        problem = f'mmengine cannot write it as literal assignments ({reason})'
        raise ValueError(_NOT_PLAIN.format(problem=problem)) from None
    diff = _first_difference(cfg, written, '')
    if diff is not None:
        problem = f'{diff or "the config"} would not read back as the stored value'
        raise ValueError(_NOT_PLAIN.format(problem=problem))
    return text


def student_config_text(cfg_text: str) -> str:
    """Turn a distiller training config into a plain-mmdet config of its student.

    The text is data: it is parsed without being executed (:func:`parse_config_text`).
    ``model`` becomes ``model['student']``; every hook, optimizer constructor, type and import
    of this package is mapped back to MMDetection's or dropped (:func:`plain_mmdet_config`);
    ``load_from`` / ``resume`` are reset (they pointed at the teacher / distiller checkpoints)
    and ``work_dir`` is removed, so mmdet's ``tools/train.py`` / ``test.py`` use their default
    ``./work_dirs/<config stem>`` instead of the distiller's run directory.

    The result only holds literal assignments: every key must be an ``int`` or a ``str`` that
    mmengine writes as itself (an identifier, or printable text without quotes/backslashes),
    no string may hold mmengine's ``{{ }}`` substitution markers, and the text is parsed again
    and compared with what was meant.

    Raises:
        ValueError: The config is not literal-only, has no ``model['student']`` dict, holds
            a type of this package that plain mmdet has no equivalent for, or a key/value that
            would not be written as itself (the message names its key path).
    """
    try:
        cfg = parse_config_text(cfg_text)
    except (SyntaxError, ValueError) as err:
        problem = f'it is not only literal assignments ({err}; it is never run)'
        raise ValueError(_NOT_PLAIN.format(problem=problem)) from None
    student = cfg.get('model', {}).get('student') if isinstance(cfg.get('model'), dict) else None
    if not isinstance(student, dict) or 'type' not in student:
        raise ValueError("the config has no model['student'] dict with a 'type'")
    from ..models.detectors import GROUP_DETECTORS  # lazy: models import utils

    # the distiller builds its student as our group subclass (e.g. GroupConditionalDETR): seen
    # as that type, the options of ours (fold_group_self_attention) are dropped with it
    student_type = student['type']
    if isinstance(student_type, str):
        student_type = GROUP_DETECTORS.get(student_type, student_type)
    cfg['model'] = dict(student, type=student_type)
    cfg, _ = plain_mmdet_config(cfg)
    cfg.pop('work_dir', None)
    cfg.update(load_from=None, resume=False)
    return _checked_pretty_text(cfg)


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
