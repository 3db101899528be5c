"""Which training run a checkpoint belongs to, and which checkpoint ``--resume`` continues.

A training run gets a random id (``uuid4().hex``) when it starts from scratch and keeps it when
it is resumed. :class:`AtomicCheckpointHook` records it in every checkpoint it saves
(``meta['run_id']``) and in the work dir's ``run_id`` file (the run that last trained there).
:func:`choose_resume_checkpoint` uses both to pick the checkpoint an automatic resume loads.

Everything read back (the ``run_id`` file, ``meta['run_id']``, ``last_checkpoint``) is data: an
id is used only when it is 32 lowercase hex digits, and a path only when it names a checkpoint
file (``filename_tmpl``) of the checkpoint directory.
"""

import os.path as osp
import re
import uuid
from typing import Callable, Dict, List, NamedTuple, Optional, Tuple

import torch

from ..utils.checkpoint import register_mmengine_safe_globals
from .checkpoint_files import (
    checkpoint_step,
    complete_checkpoints,
    is_complete_checkpoint,
    write_text_atomically,
)

RUN_ID_FILE = 'run_id'  # in the work dir, next to last_checkpoint
RUN_ID_KEY = 'run_id'  # in a checkpoint's meta
_RUN_ID = re.compile(r'[0-9a-f]{32}')
_MAX_TEXT = 4096  # a run id or a checkpoint path is far shorter

ReadRunId = Callable[[str], Optional[str]]


class ResumeChoice(NamedTuple):
    """The checkpoint an automatic resume loads (``None``: start from scratch), and why."""

    path: Optional[str]
    reason: str


def new_run_id() -> str:
    """A fresh random run id: 32 lowercase hex digits."""
    return uuid.uuid4().hex


def is_run_id(value: object) -> bool:
    """Whether ``value`` is a run id (a ``str`` of 32 lowercase hex digits)."""
    return isinstance(value, str) and _RUN_ID.fullmatch(value) is not None


def read_small_text(path: str) -> Optional[str]:
    """The stripped text of the small file ``path``; ``None`` if there is no such file.

    Raises:
        ValueError: The file is longer than a run id or a path can be, is not UTF-8, or holds
            a NUL byte or several lines.
    """
    if not osp.isfile(path):
        return None
    with open(path, 'rb') as f:
        data = f.read(_MAX_TEXT + 1)
    try:
        text = data.decode('utf-8').strip()
    except UnicodeDecodeError:
        raise ValueError('is not UTF-8 text') from None
    if len(data) > _MAX_TEXT or '\x00' in text or '\n' in text or '\r' in text:
        raise ValueError('holds more than one short line of text')
    return text


def read_run_id_file(path: str) -> Optional[str]:
    """The run id in the ``run_id`` file ``path``; ``None`` if there is no such file.

    Raises:
        ValueError: The file holds anything but a run id (it is never used as a path).
    """
    text = read_small_text(path)
    if text is None:
        return None
    if not is_run_id(text):
        raise ValueError(f'holds {text[:80]!r}, not a run id (32 lowercase hex digits)')
    return text


def write_run_id_file(path: str, run_id: str) -> None:
    """Write ``run_id`` to ``path`` atomically (a kill leaves the old file or the new one)."""
    if not is_run_id(run_id):
        raise ValueError(f'not a run id: {run_id!r}')
    write_text_atomically(path, run_id + '\n')


def checkpoint_run_id(path: str) -> Optional[str]:
    """``meta['run_id']`` of the checkpoint ``path``; ``None`` when it records none (or no id).

    Loads with ``weights_only=True`` and ``mmap=True``: the tensors are not read.

    Raises:
        ValueError: The file cannot be loaded as a checkpoint.
    """
    register_mmengine_safe_globals()
    try:
        checkpoint = torch.load(path, map_location='cpu', weights_only=True, mmap=True)
    except Exception as err:  # noqa: BLE001 - reported by the caller
        raise ValueError(f'cannot be read ({type(err).__name__}: {str(err)[:200]})') from err
    meta = checkpoint.get('meta') if isinstance(checkpoint, dict) else None
    run_id = meta.get(RUN_ID_KEY) if isinstance(meta, dict) else None
    return run_id if is_run_id(run_id) else None


def named_checkpoint(text: Optional[str], directory: str, filename_tmpl: str) -> Optional[str]:
    """The path ``last_checkpoint``'s ``text`` names if it is a checkpoint file of ``directory``.

    Returns:
        ``text`` when its file name follows ``filename_tmpl`` and it lies in ``directory``
        (compared after resolving links); else ``None``.
    """
    if not text or checkpoint_step(osp.basename(text), filename_tmpl) is None:
        return None
    if osp.realpath(osp.dirname(text)) != osp.realpath(directory):
        return None
    return text


class _RunIds:
    """Read checkpoints' run ids at most once each; report unreadable files once."""

    def __init__(self, read: ReadRunId, warn: Callable[[str], None]) -> None:
        self._read, self._warn = read, warn
        self._ids: Dict[str, Tuple[bool, Optional[str]]] = {}

    def readable(self, path: str) -> bool:
        return self._get(path)[0]

    def __call__(self, path: str) -> Optional[str]:
        return self._get(path)[1]

    def _get(self, path: str) -> Tuple[bool, Optional[str]]:
        if path not in self._ids:
            try:
                self._ids[path] = (True, self._read(path))
            except ValueError as err:
                self._warn(f'Skipped {path}: {err}')
                self._ids[path] = (False, None)
        return self._ids[path]


def _newest_of_run(
    found: List[Tuple[int, str]], run_id: str, run_ids: _RunIds, above: int = -1
) -> Optional[Tuple[int, str]]:
    """The first of ``found`` (newest first) recorded as ``run_id``'s with a step over ``above``."""
    for step, path in found:
        if step <= above:
            break
        if run_ids(path) == run_id:
            return step, path
    return None


def choose_resume_checkpoint(
    directory: str,
    filename_tmpl: str,
    named: Optional[str],
    run_id: Optional[str],
    warn: Callable[[str], None],
    unusable: str = 'names no checkpoint file of this work dir',
    read_run_id: ReadRunId = checkpoint_run_id,
) -> ResumeChoice:
    """The checkpoint an automatic resume (``resume=True``, no ``load_from``) continues.

    The rule: resume continues *this* run, the one whose id the work dir records (``run_id``),
    from its newest complete checkpoint; a checkpoint recorded as another run's is never chosen.

    1. ``named`` (what ``last_checkpoint`` names, see :func:`named_checkpoint`), when it is a
       complete checkpoint not recorded as another run's, is chosen; unless a complete checkpoint
       of the same run with a higher step exists (a kill came after that checkpoint was saved,
       before ``last_checkpoint`` was updated): then that one.
    2. Otherwise the newest complete checkpoint recorded as this run's; none: start from scratch.
    3. A work dir without a run id (written before run ids existed) and no usable ``named``: the
       newest complete checkpoint, whichever run saved it (the behaviour before run ids).

    Args:
        directory: The checkpoint directory.
        filename_tmpl: The checkpoints' file name template (``'iter_{}.pth'``).
        named: The checkpoint ``last_checkpoint`` names (already validated), or ``None``.
        run_id: The work dir's run id, or ``None``.
        warn: Called with a message for each checkpoint that cannot be read (it is skipped).
        unusable: What is wrong with ``last_checkpoint`` when ``named`` is ``None`` (for the
            reason given).
        read_run_id: Reads a checkpoint's run id (:func:`checkpoint_run_id`).
    """
    found = complete_checkpoints(directory, filename_tmpl)
    run_ids = _RunIds(read_run_id, warn)
    choice, problem = _trust_named(named, found, run_id, run_ids, filename_tmpl)
    if choice is not None:
        return choice
    return _fall_back(found, directory, run_id, run_ids, f'last_checkpoint {problem or unusable}')


def _trust_named(
    named: Optional[str],
    found: List[Tuple[int, str]],
    run_id: Optional[str],
    run_ids: _RunIds,
    filename_tmpl: str,
) -> Tuple[Optional[ResumeChoice], str]:
    """Rule 1 of :func:`choose_resume_checkpoint`; else ``None`` and what is wrong with
    ``named`` (``''``: ``named`` is ``None``)."""
    if named is None:
        return None, ''
    if not (is_complete_checkpoint(named) and run_ids.readable(named)):
        return None, f'names {named}, missing, incomplete or unreadable'
    named_id = run_ids(named)
    if run_id is not None and named_id not in (None, run_id):
        return None, f'names {named}, a checkpoint of another run (id {named_id})'
    this = run_id or named_id
    step = checkpoint_step(osp.basename(named), filename_tmpl)
    newer = _newest_of_run(found, this, run_ids, above=step) if this else None
    if newer is None:
        return ResumeChoice(named, 'named by last_checkpoint'), ''
    reason = (
        f'a newer complete checkpoint of this run (id {this}) than {named}, which '
        'last_checkpoint names (a kill came between its save and the update of last_checkpoint)'
    )
    return ResumeChoice(newer[1], reason), ''


def _fall_back(
    found: List[Tuple[int, str]],
    directory: str,
    run_id: Optional[str],
    run_ids: _RunIds,
    problem: str,
) -> ResumeChoice:
    """Rules 2 and 3 of :func:`choose_resume_checkpoint`, ``last_checkpoint`` unusable."""
    if run_id is None:
        if not found:
            return ResumeChoice(None, f'{problem} and {directory} holds no complete checkpoint')
        return ResumeChoice(
            found[0][1],
            f'{problem}, and the work dir records no run id (it was written before run ids): '
            'the newest complete checkpoint, whichever run saved it',
        )
    newest = _newest_of_run(found, run_id, run_ids)
    if newest is None:
        return ResumeChoice(
            None,
            f'{problem} and no complete checkpoint of this run (id {run_id}) is in {directory}',
        )
    return ResumeChoice(
        newest[1], f'{problem}: the newest complete checkpoint of this run (id {run_id})'
    )
