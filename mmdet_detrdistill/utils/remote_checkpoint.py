"""Checkpoints given as URLs or storage-backend paths, fetched to a local file first.

``model.teacher_ckpt`` accepts what mmdet users write for ``load_from``:

* ``http(s)://`` URLs are downloaded once into the cache ``load_from`` uses: mmengine's
  ``load_from_http`` calls ``torch.hub.load_state_dict_from_url`` with ``model_dir=None``,
  i.e. ``<torch.hub.get_dir()>/checkpoints/<file name of the URL>`` (``$TORCH_HOME/hub/...``).
  A file already there is not downloaded again.
* any other path that :mod:`mmengine.fileio` reads (local files, and the prefixes of its
  registered backends such as ``petrel://`` / ``s3://``) is fetched with the backend's
  ``get_local_path``.

Only the bytes are fetched here; loading stays with the safe loader of
:mod:`mmdet_detrdistill.utils.checkpoint` (``weights_only=True`` and an allow-list).
"""

import os
import os.path as osp
import tempfile
from contextlib import contextmanager
from typing import Iterator, Optional
from urllib.parse import urlparse

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend

URL_PREFIXES = ('http://', 'https://')


def is_url(filename: str) -> bool:
    """Whether ``filename`` is an ``http(s)://`` URL."""
    return str(filename).startswith(URL_PREFIXES)


def url_cache_path(url: str) -> str:
    """Where ``load_from`` (torch.hub) caches the file of ``url``."""
    name = osp.basename(urlparse(url).path)
    if not name:
        raise ValueError(f'checkpoint URL {url!r} does not end with a file name')
    return osp.join(torch.hub.get_dir(), 'checkpoints', name)


def _download(url: str, cached: str) -> Optional[OSError]:
    """Download ``url`` to ``cached`` (atomically, via a temp file); return the error if any."""
    os.makedirs(osp.dirname(cached), exist_ok=True)
    try:
        torch.hub.download_url_to_file(url, cached, progress=os.isatty(2))
    except (OSError, ValueError) as err:  # URLError/HTTPError/timeouts are OSErrors
        return err if isinstance(err, OSError) else OSError(str(err))
    return None


def download_to_cache(url: str, role: str = 'teacher') -> str:
    """Download ``url`` into the ``load_from`` cache unless it is there; return the local path.

    In distributed runs rank 0 downloads while the others wait, as mmengine's
    ``load_from_http`` does; a rank that still sees no file (a node with its own cache)
    downloads it itself.

    Raises:
        FileNotFoundError: The download failed (offline, 404, ...); names the URL and the cache.
    """
    cached = url_cache_path(url)
    rank, world_size = get_dist_info()
    error = None
    if rank == 0 and not osp.isfile(cached):
        error = _download(url, cached)
    if world_size > 1:
        barrier()
    if error is None and not osp.isfile(cached):
        error = _download(url, cached)
    if error is not None:
        reason = ' '.join(f'{type(error).__name__}: {error}'.split())[:300]
        raise FileNotFoundError(
            f'cannot download the {role} checkpoint {url!r} into the cache {cached!r} '
            f'({reason}). Check the URL and the network; offline, download the file elsewhere '
            f'and copy it to {cached!r} (the cache load_from uses; set TORCH_HOME to move it), '
            f'or give a local file instead (model.{role}_ckpt=PATH, load_from=PATH).'
        ) from None
    return cached


@contextmanager
def local_checkpoint_path(filename: str, role: str = 'teacher') -> Iterator[str]:
    """Yield a local file path for ``filename`` (a path, a URL or a storage-backend path).

    URLs resolve to the ``load_from`` cache (downloaded once); other mmengine fileio
    backends to a temporary copy that is removed on exit; local paths to themselves.

    Raises:
        FileNotFoundError: A download failed, or no fileio backend reads ``filename``.
    """
    filename = os.fspath(filename)
    if is_url(filename):
        yield download_to_cache(filename, role)
        return
    try:
        backend = get_file_backend(filename)
    except (ValueError, KeyError, TypeError) as err:
        raise FileNotFoundError(
            f'{role} checkpoint {filename!r}: no mmengine.fileio backend reads this path '
            f'({err}); use a local file, an http(s) URL or a registered backend prefix'
        ) from None
    if isinstance(backend, LocalBackend):
        yield filename
    elif hasattr(backend, 'get_local_path'):  # e.g. PetrelBackend: a temporary copy
        with backend.get_local_path(filename) as path:
            yield str(path)
    else:  # backends that only return bytes (memcached, lmdb, ...)
        with tempfile.TemporaryDirectory() as tmp:
            path = osp.join(tmp, osp.basename(filename) or 'checkpoint.pth')
            with open(path, 'wb') as f:
                f.write(backend.get(filename))
            yield path
