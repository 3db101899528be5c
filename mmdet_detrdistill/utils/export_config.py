"""The stored training config of a distiller checkpoint as a plain-mmdet config of its student.

The config text (``meta['cfg']``) is data from the checkpoint: it is parsed without being run
(:func:`parse_config_text`), its keys and values are checked to be written back as themselves,
and the written text is parsed again and compared with what was meant. The checkpoint side of
the export is :mod:`.export`.
"""

import ast
import keyword
import math
import unicodedata
from typing import Any, Dict, Optional

from .plain_config import plain_mmdet_config

_CONSTANT_NAMES = {'True': True, 'False': False, 'None': None}
# top-level names that mmengine's Config.fromfile treats specially: '_base_' loads other files,
# '_deprecation_' is popped, the reserved ones are refused, '__*' names are dropped
_SPECIAL_TOP_LEVEL = ('_base_', '_deprecation_', 'filename', 'text', 'pretty_text', 'env_variables')
_NOT_PLAIN = (
    "the checkpoint's stored config is not a plain config: {problem}. No config is exported "
    'for it (only the checkpoint): write the student config by hand, e.g. from the training '
    "config's model.student."
)


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
