"""Files of a checkpoint directory: atomic writes, completeness, the complete checkpoints.

Used by :class:`AtomicCheckpointHook`. A file being written is named ``.NAME.tmp`` next to its
final ``NAME``: it never matches ``iter_*.pth`` / ``epoch_*.pth``, so nothing resumes from it.
"""

import os
import os.path as osp
import re
import zipfile
from typing import Callable, List, Optional, Tuple

TMP_SUFFIX = '.tmp'


def temporary_name(filename: str) -> str:
    """The name ``filename`` has while it is written: ``iter_3.pth`` -> ``.iter_3.pth.tmp``."""
    return f'.{filename}{TMP_SUFFIX}'


def fsync_path(path: str) -> None:
    """Flush a written file (or a directory's entries) to disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish(tmp_path: str, path: str) -> None:
    """Make the complete file ``tmp_path`` appear as ``path`` in one step.

    ``fsync`` first (the data is on disk before the name is), then ``os.replace`` (atomic on
    POSIX: ``path`` is the old file or the new one, never a mix), then ``fsync`` of the
    directory (the rename itself survives a power loss).
    """
    fsync_path(tmp_path)
    os.replace(tmp_path, path)
    fsync_path(osp.dirname(osp.abspath(path)))


def write_text_atomically(path: str, text: str) -> None:
    """Write ``text`` to ``path`` through a temporary file and :func:`publish`."""
    tmp_path = osp.join(osp.dirname(osp.abspath(path)), temporary_name(osp.basename(path)))
    with open(tmp_path, 'w') as f:
        f.write(text)
        f.flush()
    publish(tmp_path, path)


def is_complete_checkpoint(path: str) -> bool:
    """Whether ``path`` is a whole ``torch.save`` file.

    ``torch.save`` writes a zip archive whose central directory comes last: a file cut short
    by a kill lacks it. Legacy (non-zip) files count as incomplete.
    """
    return osp.isfile(path) and zipfile.is_zipfile(path)


def _step_pattern(filename_tmpl: str) -> Optional['re.Pattern[str]']:
    """``'iter_{}.pth'`` -> a regex whose group 1 is the step; None for other templates."""
    parts = filename_tmpl.split('{}')
    if len(parts) != 2:
        return None
    return re.compile(rf'^{re.escape(parts[0])}(\d+){re.escape(parts[1])}$')


def checkpoint_step(filename: str, filename_tmpl: str) -> Optional[int]:
    """The step in ``filename`` (a basename) if it follows ``filename_tmpl``."""
    pattern = _step_pattern(filename_tmpl)
    match = pattern.match(filename) if pattern else None
    return int(match.group(1)) if match else None


def complete_checkpoints(directory: str, filename_tmpl: str) -> List[Tuple[int, str]]:
    """``(step, path)`` of every complete checkpoint in ``directory``, newest (highest step)
    first; ``[]`` if there is no such directory."""
    if not osp.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        step = checkpoint_step(name, filename_tmpl)
        path = osp.join(directory, name)
        if step is not None and is_complete_checkpoint(path):
            found.append((step, path))
    return sorted(found, reverse=True)


def newest_complete_checkpoint(directory: str, filename_tmpl: str) -> Optional[Tuple[int, str]]:
    """``(step, path)`` of the complete checkpoint with the highest step in ``directory``."""
    found = complete_checkpoints(directory, filename_tmpl)
    return found[0] if found else None


def remove_temporary_files(directory: str, is_own: Callable[[str], bool]) -> List[str]:
    """Remove the ``.NAME.tmp`` files a killed writer left in ``directory``, where
    ``is_own(NAME)``; return their names."""
    removed = []
    if not osp.isdir(directory):
        return removed
    for name in sorted(os.listdir(directory)):
        if not (name.startswith('.') and name.endswith(TMP_SUFFIX)):
            continue
        if is_own(name[1 : -len(TMP_SUFFIX)]):
            os.remove(osp.join(directory, name))
            removed.append(name)
    return removed
