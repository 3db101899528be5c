"""Safe URL and model-zoo checkpoint loads for mmengine's ``CheckpointLoader``.

mmengine 0.10.7 registers ``load_from_http`` for ``('http://', 'https://')``; it reads the
file through ``torch.hub.load_state_dict_from_url``, i.e. ``torch.load(weights_only=False)``,
so a malicious checkpoint runs code. Its model-zoo schemes call that function directly (not
through the registry): ``torchvision://`` / ``modelzoo://`` (``load_from_torchvision``, used by
nearly every mmdet backbone's ``init_cfg``), ``open-mmlab://`` / ``openmmlab://``
(``load_from_openmmlab``) and ``mmcls://`` (``load_from_mmcls``).

:func:`register_safe_url_loader` (called by ``import mmdet_detrdistill``) replaces all of them
through mmengine's documented ``CheckpointLoader.register_scheme(..., force=True)``:

* ``http://``, ``https://``: :func:`load_from_http_safely`;
* ``torchvision://NAME``, ``modelzoo://NAME`` (deprecated, with mmengine's warning):
  :func:`load_from_torchvision_safely`. ``NAME`` is looked up in mmengine's
  ``get_torchvision_models()``; that imports torchvision, so where torchvision is not installed
  the names come from mmengine's bundled ``hub/torchvision_0.12.json`` (which is also where
  mmengine starts from with torchvision: ``resnet50``, ``resnet18``, ... resolve to the same
  URLs either way; only the ``<model>.<weights>`` names of torchvision >= 0.13 need it);
* ``open-mmlab://NAME``, ``openmmlab://NAME``: :func:`load_from_openmmlab_safely`. ``NAME`` is
  looked up in mmengine's ``get_external_models()`` (its ``hub/openmmlab.json`` updated with
  ``$MMENGINE_HOME/open_mmlab.json``), after mapping deprecated names with
  ``get_deprecated_model_names()`` and mmengine's warning. A value that is not a URL is a file
  under ``$MMENGINE_HOME``, loaded with
  :func:`~mmdet_detrdistill.utils.checkpoint.load_checkpoint_file`;
* ``mmcls://NAME``: :func:`load_from_mmcls_safely`, ``NAME`` looked up in mmengine's
  ``get_mmcls_models()``; the checkpoint is then reduced to its backbone by mmengine's
  ``_process_mmcls_checkpoint``, as mmengine does.

A URL, given or resolved, is loaded with
:func:`~mmdet_detrdistill.utils.checkpoint.read_checkpoint` (``role='pretrained'``): downloaded
into this package's URL cache, keyed by the whole URL (see
:mod:`mmdet_detrdistill.utils.remote_checkpoint`), and loaded with ``weights_only=True`` and the
allow-list, like ``model.teacher_ckpt``; a refused file is deleted from the cache. From then on
``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained', checkpoint=...)`` and
``mmengine.runner.load_checkpoint`` are safe for all these schemes. A name missing from its
table raises :class:`UnknownModelNameError`, which names the scheme, the name and the table.
:func:`resolve_model_url` shows what a name resolves to, without downloading anything.
"""

import difflib
import logging
import os.path as osp
from typing import Any, Callable, Dict, Tuple

import mmengine
from mmengine.fileio import load as load_file
from mmengine.logging import print_log
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import MapLocation, load_checkpoint_file, read_checkpoint
from .remote_checkpoint import URL_PREFIXES, is_url

TORCHVISION_PREFIXES = ('torchvision://', 'modelzoo://')
OPENMMLAB_PREFIXES = ('open-mmlab://', 'openmmlab://')
MMCLS_PREFIXES = ('mmcls://',)
_ZOO_PREFIXES = TORCHVISION_PREFIXES + OPENMMLAB_PREFIXES + MMCLS_PREFIXES
_CLOSE_MATCHES = 3


class UnknownModelNameError(KeyError, ValueError):
    """A ``torchvision://`` / ``open-mmlab://`` / ``mmcls://`` name is not in its table.

    A ``KeyError`` (what mmengine raises) and a ``ValueError``; its message is not quoted.
    """

    __str__ = BaseException.__str__


def _hub_json(name: str) -> str:
    """Path of one of the model tables bundled with mmengine (``mmengine/hub/<name>``)."""
    return osp.join(mmengine.__path__[0], 'hub', name)


def _split_scheme(filename: str, prefixes: Tuple[str, ...]) -> Tuple[str, str]:
    """Return ``(prefix, model name)`` of ``filename``, which starts with one of ``prefixes``."""
    for prefix in prefixes:
        if filename.startswith(prefix):
            return prefix, filename[len(prefix) :]
    raise ValueError(f'{filename!r} does not start with one of {prefixes}')


def torchvision_model_urls() -> Tuple[Dict[str, str], str]:
    """Return the ``torchvision://`` name -> URL table and where it comes from.

    mmengine's ``get_torchvision_models()`` when torchvision is installed, else mmengine's
    bundled ``hub/torchvision_0.12.json`` (the table ``get_torchvision_models`` starts from).

    Raises:
        ModuleNotFoundError: torchvision is installed but one of its own imports is missing.
    """
    try:
        urls = mmengine_checkpoint.get_torchvision_models()
        return urls, "torchvision's model weights (mmengine's get_torchvision_models())"
    except ModuleNotFoundError as err:
        if err.name != 'torchvision':
            raise
    path = _hub_json('torchvision_0.12.json')
    return load_file(path), f'{path} (bundled with mmengine; torchvision is not installed)'


def _lookup(urls: Dict[str, str], prefix: str, name: str, source: str) -> str:
    """Return ``urls[name]``; raise :class:`UnknownModelNameError` when it is missing."""
    if name in urls:
        return urls[name]
    close = difflib.get_close_matches(name, [str(key) for key in urls], n=_CLOSE_MATCHES)
    hint = f' Did you mean {", ".join(prefix + c for c in close)}?' if close else ''
    raise UnknownModelNameError(
        f'unknown model name {name!r} in {prefix}{name}: the names of {prefix} come from '
        f'{source}, which has no {name!r} ({len(urls)} names).{hint}'
    )


def _resolve_openmmlab(prefix: str, name: str) -> str:
    """Resolve an ``open-mmlab://`` name as ``load_from_openmmlab`` does (URL or local path)."""
    urls = mmengine_checkpoint.get_external_models()
    deprecated = mmengine_checkpoint.get_deprecated_model_names()
    if name in deprecated:
        print_log(
            f'{prefix}{name} is deprecated in favor of {prefix}{deprecated[name]}',
            logger='current',
            level=logging.WARNING,
        )
        name = deprecated[name]
    home = mmengine_checkpoint._get_mmengine_home()
    external = osp.join(home, 'open_mmlab.json')
    source = f'{_hub_json("openmmlab.json")} updated with {external} (if it exists)'
    target = _lookup(urls, prefix, name, source)
    return target if is_url(target) else osp.join(home, target)


def resolve_model_url(filename: str) -> str:
    """Resolve a model-zoo checkpoint name to what is loaded, exactly as mmengine does.

    Nothing is downloaded. Logs mmengine's deprecation warnings (``modelzoo://``, deprecated
    ``open-mmlab://`` names).

    Args:
        filename: ``torchvision://NAME``, ``modelzoo://NAME``, ``open-mmlab://NAME``,
            ``openmmlab://NAME`` or ``mmcls://NAME``.

    Returns:
        The checkpoint URL; for an ``open-mmlab://`` name whose table entry is not a URL, the
        local path under ``$MMENGINE_HOME`` (which may not exist).

    Raises:
        UnknownModelNameError: ``NAME`` is not in the scheme's table.
        ValueError: ``filename`` has none of these prefixes.
    """
    filename = str(filename)
    if filename.startswith(TORCHVISION_PREFIXES):
        prefix, name = _split_scheme(filename, TORCHVISION_PREFIXES)
        if prefix == 'modelzoo://':
            print_log(
                'The URL scheme of "modelzoo://" is deprecated, please use "torchvision://" '
                'instead',
                logger='current',
                level=logging.WARNING,
            )
        urls, source = torchvision_model_urls()
        return _lookup(urls, prefix, name, source)
    if filename.startswith(OPENMMLAB_PREFIXES):
        return _resolve_openmmlab(*_split_scheme(filename, OPENMMLAB_PREFIXES))
    if filename.startswith(MMCLS_PREFIXES):
        prefix, name = _split_scheme(filename, MMCLS_PREFIXES)
        urls = mmengine_checkpoint.get_mmcls_models()
        return _lookup(urls, prefix, name, _hub_json('mmcls.json'))
    raise ValueError(f'{filename!r} is not a model-zoo checkpoint name (prefixes {_ZOO_PREFIXES})')


def _read_resolved(filename: str, map_location: MapLocation) -> Dict[str, Any]:
    """Resolve ``filename`` and load the URL (or fileio path) it names safely."""
    target = resolve_model_url(filename)
    print_log(f'{filename} resolves to {target}', logger='current', level=logging.INFO)
    return read_checkpoint(target, role='pretrained', map_location=map_location)


def load_from_http_safely(filename: str, map_location: MapLocation = None) -> Dict[str, Any]:
    """Load an ``http(s)://`` checkpoint safely; the ``CheckpointLoader`` scheme for URLs.

    Args:
        filename: The URL (downloaded once into the URL cache, rank 0 first).
        map_location: Passed to ``torch.load``, as mmengine's loader does.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: The download failed.
        UnsafeCheckpointError: The file needs non-allow-listed globals (it is not unpickled,
            and is deleted from the cache).
        ValueError: The file is corrupt or not a checkpoint dict (deleted from the cache).
    """
    return read_checkpoint(filename, role='pretrained', map_location=map_location)


def load_from_torchvision_safely(filename: str, map_location: MapLocation = None) -> Dict[str, Any]:
    """Load a ``torchvision://NAME`` / ``modelzoo://NAME`` checkpoint safely.

    Args:
        filename: The scheme and model name, e.g. ``torchvision://resnet50``.
        map_location: Passed to ``torch.load``.

    Returns:
        The checkpoint dict.

    Raises:
        UnknownModelNameError: ``NAME`` is not a known torchvision model.
        FileNotFoundError, UnsafeCheckpointError, ValueError: As :func:`load_from_http_safely`.
    """
    return _read_resolved(filename, map_location)


def load_from_openmmlab_safely(filename: str, map_location: MapLocation = None) -> Dict[str, Any]:
    """Load an ``open-mmlab://NAME`` / ``openmmlab://NAME`` checkpoint safely.

    A URL entry is downloaded into the URL cache; any other entry is a file under
    ``$MMENGINE_HOME``, loaded by the safe local loader.

    Args:
        filename: The scheme and model name, e.g. ``open-mmlab://resnet50_caffe``.
        map_location: Passed to ``torch.load``.

    Returns:
        The checkpoint dict.

    Raises:
        UnknownModelNameError: ``NAME`` is not in the open-mmlab tables.
        FileNotFoundError: The local file does not exist, or the download failed.
        UnsafeCheckpointError, ValueError: As :func:`load_from_http_safely`.
    """
    target = resolve_model_url(filename)
    print_log(f'{filename} resolves to {target}', logger='current', level=logging.INFO)
    if is_url(target):
        return read_checkpoint(target, role='pretrained', map_location=map_location)
    if not osp.isfile(target):
        raise FileNotFoundError(f'{target} can not be found (the file {filename} names).')
    return load_checkpoint_file(target, map_location=map_location)


def load_from_mmcls_safely(filename: str, map_location: MapLocation = None) -> Dict[str, Any]:
    """Load an ``mmcls://NAME`` checkpoint safely, reduced to its backbone as mmengine does.

    Args:
        filename: The scheme and model name, e.g. ``mmcls://resnet50``.
        map_location: Passed to ``torch.load``.

    Returns:
        ``{'state_dict': ...}`` with the ``backbone.`` weights, prefix removed.

    Raises:
        UnknownModelNameError: ``NAME`` is not a known mmcls model.
        FileNotFoundError, UnsafeCheckpointError, ValueError: As :func:`load_from_http_safely`.
    """
    checkpoint = _read_resolved(filename, map_location)
    return mmengine_checkpoint._process_mmcls_checkpoint(checkpoint)


_SAFE_LOADERS: Tuple[Tuple[Tuple[str, ...], Callable[..., Dict[str, Any]]], ...] = (
    (URL_PREFIXES, load_from_http_safely),
    (TORCHVISION_PREFIXES, load_from_torchvision_safely),
    (OPENMMLAB_PREFIXES, load_from_openmmlab_safely),
    (MMCLS_PREFIXES, load_from_mmcls_safely),
)


def register_safe_url_loader() -> None:
    """Make mmengine load URL and model-zoo checkpoints with this module's safe loaders.

    ``http://`` / ``https://``, ``torchvision://`` / ``modelzoo://``, ``open-mmlab://`` /
    ``openmmlab://`` and ``mmcls://`` (see the module docstring). Idempotent; process-wide
    (mmengine's ``CheckpointLoader`` is a class-level registry).
    """
    for prefixes, loader in _SAFE_LOADERS:
        CheckpointLoader.register_scheme(prefixes, loader, force=True)
