"""Checkpoints given as URLs or storage-backend paths, fetched to a local file first.

``model.teacher_ckpt`` (and, once :mod:`mmdet_detrdistill` is imported, mmengine's
``load_from`` / ``init_cfg=dict(type='Pretrained', checkpoint=URL)`` / ``load_checkpoint``,
see :mod:`mmdet_detrdistill.utils.url_loader`) accept:

* ``http(s)://`` URLs, downloaded once into
  ``<torch.hub.get_dir()>/checkpoints/<sha256(URL)[:16]>-<file name>`` (``$TORCH_HOME/hub/...``).
  The key is the whole URL, query string included, so two URLs with the same file name never
  share a cache entry; the file name is reduced to ``[A-Za-z0-9._-]`` and the path is checked
  to lie inside the cache directory. A file already there is not downloaded again. This cache
  is not shared with the file-name-keyed one mmengine's own ``load_from_http`` used (files
  there are not reused and not read). Downloads go to a ``.<name>.<random>.partial`` file in
  the same directory, renamed into place when complete and removed on any failure; every
  socket operation times out after ``$MMDET_DETRDISTILL_DOWNLOAD_TIMEOUT`` seconds (default
  60). Progress is shown on stderr when it is a terminal.
* any other path that :mod:`mmengine.fileio` reads (local files, and the prefixes of its
  registered backends such as ``petrel://`` / ``s3://``) is fetched with the backend's
  ``get_local_path``.

Only the bytes are fetched here; loading stays with the safe loader of
:mod:`mmdet_detrdistill.utils.checkpoint` (``weights_only=True`` and an allow-list), which
removes a downloaded file that fails to load (:func:`discard_cached_download`).
"""

import hashlib
import math
import os
import os.path as osp
import re
import socket
import sys
import tempfile
import time
import uuid
from contextlib import contextmanager
from http.client import HTTPException, HTTPResponse
from typing import BinaryIO, Iterator, Optional
from urllib.parse import urlsplit
from urllib.request import Request, urlopen

import torch
from mmengine.dist import barrier, get_dist_info
from mmengine.fileio import get_file_backend
from mmengine.fileio.backends import LocalBackend

URL_PREFIXES = ('http://', 'https://')
TIMEOUT_ENV = 'MMDET_DETRDISTILL_DOWNLOAD_TIMEOUT'
DEFAULT_TIMEOUT_S = 60.0
FALLBACK_NAME = 'checkpoint.pth'
_MAX_NAME_CHARS = 100
_CHUNK_BYTES = 128 << 10
_PROGRESS_INTERVAL_S = 0.5
_USAGE_HINT = (
    'give a local file instead (model.teacher_ckpt=PATH, load_from=PATH, '
    "init_cfg=dict(type='Pretrained', checkpoint=PATH))"
)


def is_url(filename: str) -> bool:
    """Whether ``filename`` is an ``http(s)://`` URL."""
    return str(filename).startswith(URL_PREFIXES)


def download_timeout() -> float:
    """Return the per-socket-operation download timeout in seconds.

    Read from ``$MMDET_DETRDISTILL_DOWNLOAD_TIMEOUT`` (default 60).

    Raises:
        ValueError: The variable is set but is not a positive finite number.
    """
    raw = os.environ.get(TIMEOUT_ENV, '').strip()
    if not raw:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise ValueError(
            f'{TIMEOUT_ENV}={raw!r} is not a positive number of seconds; set it to e.g. '
            f'{DEFAULT_TIMEOUT_S:g} or unset it'
        )
    return value


def url_cache_dir() -> str:
    """The directory URL checkpoints are cached in (torch.hub's ``checkpoints/``)."""
    return osp.join(torch.hub.get_dir(), 'checkpoints')


def _cache_file_name(url: str) -> str:
    """``<sha256(url)[:16]>-<the URL's file name reduced to [A-Za-z0-9._-]>``."""
    name = re.sub(r'[^A-Za-z0-9._-]', '', osp.basename(urlsplit(url).path))[-_MAX_NAME_CHARS:]
    if name in ('', '.', '..'):
        name = FALLBACK_NAME
    return f'{hashlib.sha256(url.encode()).hexdigest()[:16]}-{name}'


def url_cache_path(url: str) -> str:
    """Return where the file of ``url`` is cached (see the module docstring).

    Raises:
        ValueError: The path would lie outside the cache directory (cannot happen for names
            built by this module; checked anyway).
    """
    directory = url_cache_dir()
    path = osp.join(directory, _cache_file_name(url))
    if osp.realpath(osp.dirname(path)) != osp.realpath(directory):
        raise ValueError(f'cache path {path!r} of {url!r} is outside the cache {directory!r}')
    return path


def _content_length(response: HTTPResponse) -> Optional[int]:
    """The ``Content-Length`` of an HTTP response, or None if absent or malformed."""
    value = response.headers.get('Content-Length')
    return int(value) if value is not None and value.strip().isdigit() else None


def _show_progress(name: str, done: int, total: Optional[int]) -> None:
    """Write ``name: done / total MiB`` over the current stderr line."""
    size = f' / {total / 2**20:.1f}' if total else ''
    sys.stderr.write(f'\rdownloading {name}: {done / 2**20:.1f}{size} MiB')
    sys.stderr.flush()


def _copy_response(response: HTTPResponse, out: BinaryIO, name: str, progress: bool) -> None:
    """Stream ``response`` into ``out``, showing progress on stderr if ``progress``.

    Raises:
        OSError: The connection ended before ``Content-Length`` bytes arrived.
    """
    total, done, shown = _content_length(response), 0, time.monotonic()
    try:
        while True:
            chunk = response.read(_CHUNK_BYTES)
            if not chunk:
                break
            out.write(chunk)
            done += len(chunk)
            if progress and time.monotonic() - shown >= _PROGRESS_INTERVAL_S:
                _show_progress(name, done, total)
                shown = time.monotonic()
    finally:
        if progress:
            _show_progress(name, done, total)
            sys.stderr.write('\n')
    if total is not None and done != total:
        raise OSError(f'the connection closed after {done} of {total} bytes')


def _open_partial(cached: str) -> str:
    """Create an empty ``.<name>.<random>.partial`` file next to ``cached``; return its path."""
    directory, name = osp.split(cached)
    partial = osp.join(directory, f'.{name}.{uuid.uuid4().hex[:8]}.partial')
    os.close(os.open(partial, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
    return partial


def _download(url: str, cached: str, timeout: float) -> None:
    """Download ``url`` to ``cached`` via a temporary file in the same directory.

    Raises:
        OSError: Any failure (HTTP error, timeout, closed connection, ...); nothing is left
            behind.
    """
    os.makedirs(osp.dirname(cached), exist_ok=True)
    partial = _open_partial(cached)
    try:
        request = Request(url, headers={'User-Agent': 'mmdet_detrdistill'})
        with urlopen(request, timeout=timeout) as response, open(partial, 'wb') as out:
            _copy_response(response, out, osp.basename(cached), sys.stderr.isatty())
            out.flush()
            os.fsync(out.fileno())
        os.replace(partial, cached)
    except (HTTPException, ValueError) as err:  # e.g. a malformed response or URL
        raise OSError(f'{type(err).__name__}: {err}') from err
    finally:
        if osp.exists(partial):
            os.remove(partial)


def _is_timeout(error: BaseException) -> bool:
    """Whether ``error`` (or the reason of a ``URLError``) is a socket timeout."""
    timeouts = (socket.timeout, TimeoutError)
    return isinstance(error, timeouts) or isinstance(getattr(error, 'reason', None), timeouts)


def _try_download(url: str, cached: str, timeout: float) -> Optional[BaseException]:
    """:func:`_download`, returning the error instead of raising it (None on success)."""
    try:
        _download(url, cached, timeout)
    except OSError as err:  # URLError/HTTPError/timeouts are OSErrors
        return err
    return None


def _download_error(
    url: str, cached: str, role: str, error: BaseException, timeout: float
) -> FileNotFoundError:
    """The ``FileNotFoundError`` raised for a failed download."""
    reason = ' '.join(f'{type(error).__name__}: {error}'.split())[:300]
    if _is_timeout(error):
        reason += (
            f'; no data for {timeout:g} s - set {TIMEOUT_ENV} to a larger number of seconds '
            'if the server is just slow'
        )
    return FileNotFoundError(
        f'cannot download the {role} checkpoint {url!r} into the cache {cached!r} '
        f'({reason}). Check the URL and the network; offline, download the file elsewhere '
        f'and copy it to {cached!r} (set TORCH_HOME to move the cache), or {_USAGE_HINT}.'
    )


def download_to_cache(url: str, role: str = 'teacher') -> str:
    """Download ``url`` into the URL cache unless it is there; return the local path.

    In distributed runs rank 0 downloads while the others wait, as mmengine's
    ``load_from_http`` does; a rank that still sees no file (a node with its own cache)
    downloads it itself.

    Raises:
        FileNotFoundError: The download failed (offline, 404, timeout, ...); names the URL and
            the cache path.
        ValueError: ``$MMDET_DETRDISTILL_DOWNLOAD_TIMEOUT`` is invalid.
    """
    cached = url_cache_path(url)
    timeout = download_timeout()
    rank, world_size = get_dist_info()
    error = None
    if rank == 0 and not osp.isfile(cached):
        error = _try_download(url, cached, timeout)
    if world_size > 1:
        barrier()
    if error is None and not osp.isfile(cached):
        error = _try_download(url, cached, timeout)
    if error is not None:
        raise _download_error(url, cached, role, error, timeout) from None
    return cached


def discard_cached_download(url: str) -> str:
    """Delete the cached file of ``url`` (it failed to load) on rank 0; describe what happened.

    Only rank 0 (``mmengine.dist.get_dist_info``) deletes, so ranks sharing a cache do not
    race; a file already gone is fine.

    Returns:
        A sentence for the error message.
    """
    cached = url_cache_path(url)
    if get_dist_info()[0] != 0:
        return f'rank 0 deletes {cached!r} from the cache; the next run downloads it again'
    try:
        os.remove(cached)
    except FileNotFoundError:
        pass
    return 'the downloaded file was deleted from the cache; the next run downloads it again'


@contextmanager
def local_checkpoint_path(filename: str, role: str = 'teacher') -> Iterator[str]:
    """Yield a local file path for ``filename`` (a path, a URL or a storage-backend path).

    URLs resolve to the URL cache (downloaded once); other mmengine fileio backends to a
    temporary copy that is removed on exit; local paths to themselves.

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
