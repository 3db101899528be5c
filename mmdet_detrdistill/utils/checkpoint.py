"""Safe checkpoint loading and saving under ``torch.load(weights_only=True)``.

Since torch 2.6 ``torch.load`` only unpickles allow-listed types. MMEngine Runner checkpoints
also hold numpy arrays/scalars and ``mmengine.logging.HistoryBuffer`` objects (in
``message_hub``), so :func:`register_mmengine_safe_globals` allow-lists exactly those types
(never ``weights_only=False``); ``import mmdet_detrdistill`` calls it, for the whole process
(see the package docstring). Everything else here loads with ``weights_only=True`` too.
"""

import io
import os
import pickle
import pickletools
import re
import tempfile
import zipfile
from _compat_pickle import IMPORT_MAPPING, NAME_MAPPING
from typing import Any, Callable, Dict, List, NoReturn, Union

import numpy as np
import torch
from torch import nn

from .remote_checkpoint import discard_cached_download, is_url, local_checkpoint_path

MapLocation = Union[str, torch.device, Callable, Dict[str, str], None]

# Typecodes of the numpy dtypes allowed inside checkpoints: bool, signed and unsigned ints,
# float16/32/64, the real numbers a metric can return into the message hub (``HistoryBuffer``
# keeps float64 / int64 arrays). Long double, complex and object ('O') arrays are not allowed:
# a Runner checkpoint holds none.
_NUMPY_DTYPE_CHARS = '?bBhHiIlLqQefd'
_HISTORY_BUFFER_METHODS = ('min', 'max', 'current', 'mean')
_REGISTERED = False


class UnsafeCheckpointError(ValueError):
    """A checkpoint needs a global that is not allow-listed: unpickling it could run code."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's keys or shapes do not match the model it should be loaded into."""


def _history_buffer_getattr(owner: Any, name: str) -> Any:
    """Serve ``builtins.getattr`` in ``weights_only`` loads, for HistoryBuffer methods only.

    A ``HistoryBuffer`` pickles its statistics methods as ``getattr(HistoryBuffer, 'mean')``.
    The real ``getattr`` would let a checkpoint reach any attribute (e.g. ``__globals__``).
    """
    from mmengine.logging import HistoryBuffer

    if owner is HistoryBuffer and name in _HISTORY_BUFFER_METHODS:
        return getattr(HistoryBuffer, name)
    raise pickle.UnpicklingError(
        f'refusing getattr({owner!r}, {name!r}): only HistoryBuffer statistics methods '
        f'{_HISTORY_BUFFER_METHODS} are allowed in checkpoints'
    )


def _mmengine_safe_globals() -> List[Any]:
    """Return the globals MMEngine Runner checkpoints need, in ``add_safe_globals`` form."""
    from mmengine.logging import HistoryBuffer

    core = getattr(np, '_core', None) or np.core  # numpy >= 2 renamed numpy.core
    safe: List[Any] = [np.ndarray, np.dtype, HistoryBuffer]
    safe.append((_history_buffer_getattr, 'builtins.getattr'))
    for func in ('_reconstruct', 'scalar'):
        obj = getattr(core.multiarray, func)
        # Pickles written under numpy 1.x name ``numpy.core``, under numpy 2.x ``numpy._core``.
        safe += [(obj, f'numpy.core.multiarray.{func}'), (obj, f'numpy._core.multiarray.{func}')]
    # ``np.dtype('f8', ...)`` returns a ``numpy.dtypes.Float64DType`` that is then BUILT; BUILD
    # needs the concrete class allow-listed (it never appears as a GLOBAL).
    safe += sorted({type(np.dtype(char)) for char in _NUMPY_DTYPE_CHARS}, key=str)
    return safe


def register_mmengine_safe_globals() -> None:
    """Allow-list the types MMEngine writes into Runner checkpoints for ``weights_only`` loads.

    Idempotent; process-wide (``torch.serialization.add_safe_globals``). Covers numpy arrays
    and scalars of bool, int, uint and float16/32/64 dtypes (numpy 1.x and 2.x pickle names),
    ``mmengine.logging.HistoryBuffer`` (``message_hub`` log scalars) and ``getattr`` restricted
    to its statistics methods.
    """
    global _REGISTERED
    if _REGISTERED:
        return
    torch.serialization.add_safe_globals(_mmengine_safe_globals())
    _REGISTERED = True


def _scan_pickle_globals(data: bytes) -> List[str]:
    """Statically list the globals referenced by the pickles at the start of ``data``.

    Nothing is unpickled; ``pickletools`` only disassembles. Legacy torch files are several
    pickles followed by raw storage bytes, so scanning stops at the first undecodable byte.
    """
    stream, names, strings = io.BytesIO(data), [], []
    try:
        for _ in range(8):
            for op, arg, _pos in pickletools.genops(stream):
                if op.name == 'GLOBAL':  # protocol <= 3 may use python 2 names
                    module, name = arg.split(' ', 1)
                    if (module, name) in NAME_MAPPING:
                        module, name = NAME_MAPPING[(module, name)]
                    names.append(f'{IMPORT_MAPPING.get(module, module)}.{name}')
                elif op.name == 'STACK_GLOBAL' and len(strings) >= 2:
                    names.append(f'{strings[-2]}.{strings[-1]}')
                elif isinstance(arg, str):
                    strings.append(arg)
    except Exception:  # noqa: BLE001 - end of the pickled part, or garbage
        pass
    return names


def _pickle_bytes(filename: str) -> bytes:
    """Return the pickled part of a checkpoint (``data.pkl`` of a zip, else the file head)."""
    if zipfile.is_zipfile(filename):
        with zipfile.ZipFile(filename) as archive:
            name = next(n for n in archive.namelist() if n.endswith('data.pkl'))
            return archive.read(name)
    with open(filename, 'rb') as f:
        return f.read(64 << 20)


def _unsafe_globals(filename: str, error: BaseException) -> List[str]:
    """Name the non-allow-listed globals that made a ``weights_only`` load fail (static scan)."""
    safe = {
        e[1] if isinstance(e, tuple) else f'{e.__module__}.{e.__qualname__}'
        for e in torch.serialization.get_safe_globals()
    }
    # torch's default allow-list (tensors, storages, OrderedDict, ...); only used for naming.
    safe |= set(getattr(torch._weights_only_unpickler, '_get_allowed_globals', dict)())
    try:
        names = [n for n in _scan_pickle_globals(_pickle_bytes(filename)) if n not in safe]
    except Exception:  # noqa: BLE001 - the file is broken; fall back to torch's message
        names = []
    # 'GLOBAL x' is an unknown global; 'build ... got <class x>' an object of a type created
    # via an allowed callable (e.g. an object-dtype numpy array).
    patterns = (
        r'GLOBAL (\S+) (?:was not an allowed|whose module)',
        r"Can only build .* got <class '([^']+)'>",
        r'refusing (getattr\(.*?\)):',
    )
    for pattern in patterns if not names else ():
        match = re.search(pattern, str(error), flags=re.S)
        if match:
            names = [match.group(1)]
            break
    return sorted(set(names))


def load_checkpoint_file(filename: str, map_location: MapLocation = 'cpu') -> Dict[str, Any]:
    """Load a checkpoint with ``torch.load(weights_only=True)``.

    Args:
        filename: Path of the checkpoint.
        map_location: Passed to ``torch.load``.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: The file does not exist.
        UnsafeCheckpointError: Unpickling needs a global that is not allow-listed.
        ValueError: The file is corrupt, truncated or not a checkpoint dict.
    """
    filename = os.fspath(filename)
    if not os.path.isfile(filename):
        raise FileNotFoundError(
            f'checkpoint file {filename!r} does not exist (or is not a file); check the path, '
            'or train/download the checkpoint first'
        )
    register_mmengine_safe_globals()
    try:
        checkpoint = torch.load(filename, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - re-raised with a clear message below
        unsafe = _unsafe_globals(filename, err)
        if unsafe:
            raise UnsafeCheckpointError(
                f'checkpoint {filename!r} needs non-allow-listed global(s) {", ".join(unsafe)} '
                'whose unpickling could execute code; the file was NOT unpickled or executed. '
                'Only if you trust its source: load it with torch.load(weights_only=False) in a '
                'separate trusted session and re-save it with plain tensors/python types.'
            ) from None
        reason = ' '.join(str(err).split('WeightsUnpickler error:')[-1].split())[:200]
        raise ValueError(
            f'cannot read checkpoint {filename!r} ({type(err).__name__}: {reason}); it may be '
            'corrupt, truncated or not a torch checkpoint - re-download or re-save it'
        ) from err
    if not isinstance(checkpoint, dict):
        raise ValueError(
            f'checkpoint {filename!r} holds a {type(checkpoint).__name__}, not a dict; '
            'expected a Runner checkpoint or a state dict'
        )
    return checkpoint


def _fetched_error(err: Exception, filename: str) -> NoReturn:
    """Re-raise ``err`` (a failed load of the file fetched for ``filename``) naming its source.

    A downloaded file is first removed from the URL cache (rank 0 only), whatever the reason.
    """
    if is_url(filename):
        context = f'downloaded from {filename!r}; {discard_cached_download(filename)}'
    else:
        context = f'fetched from {filename!r}'
    if isinstance(err, (ValueError, OSError)):  # UnsafeCheckpointError, FileNotFoundError, ...
        raise type(err)(f'{err} ({context})') from None
    raise err


def read_checkpoint(
    filename: str, role: str = 'teacher', map_location: MapLocation = 'cpu'
) -> Dict[str, Any]:
    """:func:`load_checkpoint_file` for a path, an ``http(s)://`` URL or any mmengine fileio path.

    A URL is downloaded once into the URL cache (torch.hub's ``checkpoints/`` directory, keyed
    by the whole URL), other backends are fetched to a temporary file; either way the bytes are
    then loaded by the same safe loader as a local file (see
    :mod:`mmdet_detrdistill.utils.remote_checkpoint`). A downloaded file that fails to load for
    any reason (unsafe, corrupt, not a dict, ...) is deleted from the cache by rank 0, so the
    next run downloads it again.

    Args:
        filename: Local path, ``http(s)://`` URL or mmengine fileio path.
        role: What the checkpoint is for (e.g. ``'teacher'``), for error messages.
        map_location: Passed to ``torch.load``.

    Raises:
        FileNotFoundError: The file is missing or its download failed.
        UnsafeCheckpointError: Unpickling needs a global that is not allow-listed.
        ValueError: The file is corrupt, truncated or not a checkpoint dict.
    """
    with local_checkpoint_path(filename, role) as path:
        if path == os.fspath(filename):
            return load_checkpoint_file(path, map_location)
        try:
            return load_checkpoint_file(path, map_location)
        except Exception as err:  # noqa: BLE001 - any failure drops the cached download
            _fetched_error(err, os.fspath(filename))


def drop_executable_config(checkpoint: Dict[str, Any]) -> bool:
    """Remove ``meta['config']`` from a loaded checkpoint; return whether it was there.

    ``Runner.resume`` passes ``meta['config']`` to ``Config.fromstring``, which ``exec``s it:
    code execution despite ``weights_only``. MMEngine writes ``meta['cfg']``, never
    ``'config'``, so call this from a hook's ``after_load_checkpoint`` (it runs before
    ``resume`` reads the key).
    """
    meta = checkpoint.get('meta')
    return isinstance(meta, dict) and meta.pop('config', None) is not None


def get_raw_state_dict(checkpoint: Dict[str, Any], filename: str) -> Dict[str, torch.Tensor]:
    """Return the tensors of a checkpoint's state dict, without a DDP ``module.`` prefix.

    ``checkpoint`` is a Runner dict or a bare state dict; ``filename`` is used in errors.

    Raises:
        ValueError: No tensors were found.
    """
    state = checkpoint
    for key in ('state_dict', 'model', 'module'):
        if isinstance(checkpoint.get(key), dict):
            state = checkpoint[key]
            break
    tensors = {k: v for k, v in state.items() if isinstance(k, str) and torch.is_tensor(v)}
    if not tensors:
        raise ValueError(
            f'checkpoint {filename!r} holds no tensors (looked in "state_dict", "model", '
            '"module" and the top level); is it a model checkpoint?'
        )
    if all(k.startswith('module.') for k in tensors):
        tensors = {k[len('module.') :]: v for k, v in tensors.items()}
    return tensors


def extract_state_dict(checkpoint: Dict[str, Any], filename: str) -> Dict[str, torch.Tensor]:
    """Return a model state dict; strips ``module.`` and, if on every key, ``student.``.

    Raises:
        ValueError: No tensors were found.
    """
    tensors = get_raw_state_dict(checkpoint, filename)
    if all(k.startswith('student.') for k in tensors):
        tensors = {k[len('student.') :]: v for k, v in tensors.items()}
    return tensors


def _listing(title: str, keys: List[str], limit: int = 10) -> str:
    """Format up to ``limit`` keys plus a total count."""
    more = f', ... (+{len(keys) - limit} more)' if len(keys) > limit else ''
    return f'{len(keys)} {title}: {", ".join(keys[:limit])}{more}'


def load_weights_strictly(model: nn.Module, filename: str, role: str = 'teacher') -> None:
    """Load all weights of ``model`` from ``filename``; check every key before loading any.

    Args:
        model: The module to fill.
        filename: Checkpoint path, ``http(s)://`` URL or mmengine fileio path (see
            :func:`read_checkpoint`).
        role: What the model is (e.g. ``'teacher'``), for error messages.

    Raises:
        CheckpointMismatchError: Keys are missing, unexpected or have mismatched shapes
            (nothing is loaded).
    """
    state = extract_state_dict(read_checkpoint(filename, role), filename)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    mismatched = sorted(
        f'{k} (checkpoint {tuple(state[k].shape)} vs model {tuple(own[k].shape)})'
        for k in set(own) & set(state)
        if state[k].shape != own[k].shape
    )
    found = {'missing keys': missing, 'unexpected keys': unexpected, 'shape mismatches': mismatched}
    problems = [_listing(title, keys) for title, keys in found.items() if keys]
    if problems:
        raise CheckpointMismatchError(
            f'{role} checkpoint {filename!r} does not match the {role} model (nothing was '
            f'loaded): {"; ".join(problems)}. Check that the {role} config matches the '
            'architecture the checkpoint was trained with.'
        )
    model.load_state_dict(state, strict=True)


def save_checkpoint_atomically(obj: Dict[str, Any], filename: str) -> None:
    """``torch.save`` to a temp file next to ``filename``, then rename it into place.

    A crash or interrupt therefore never leaves a truncated file at ``filename``.
    """
    filename = os.fspath(filename)
    directory = os.path.dirname(os.path.abspath(filename))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f'.{os.path.basename(filename)}.', suffix='.tmp', dir=directory
    )
    try:
        with os.fdopen(fd, 'wb') as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, filename)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
