"""URL checkpoints (issue #30, items 4-5), against loopback servers only.

Properties: after ``import mmdet_detrdistill`` every mmengine URL load (``load_checkpoint``,
``CheckpointLoader``, ``init_cfg`` Pretrained) goes through the safe loader; the URL cache is
keyed by the whole URL; a stalled server fails within the download timeout, naming the URL and
leaving nothing behind; a downloaded file that fails to load is removed from the cache (by rank
0 only); a URL ending in ``/..`` writes nothing outside the cache directory.
"""

import os
import os.path as osp
import socket
import threading
import time
from pathlib import Path
from typing import Callable, Dict, Iterator, List

import pytest
import torch
from mmengine.model import BaseModule
from mmengine.runner import load_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from url_helpers import RecordingHandler, save_evil, small_model

from mmdet_detrdistill.utils import remote_checkpoint
from mmdet_detrdistill.utils.checkpoint import UnsafeCheckpointError, read_checkpoint
from mmdet_detrdistill.utils.remote_checkpoint import (
    TIMEOUT_ENV,
    download_timeout,
    url_cache_dir,
    url_cache_path,
)
from mmdet_detrdistill.utils.url_loader import load_from_http_safely, register_safe_url_loader

STALL_S = 6.0  # how long a stalled server holds a connection before closing it by itself


@pytest.fixture
def torch_home(tmp_path, monkeypatch) -> Path:
    """A fresh TORCH_HOME under ``tmp_path``."""
    home = tmp_path / 'torch_home'
    monkeypatch.setenv('TORCH_HOME', str(home))
    return home


def _stall_connection(conn: socket.socket, reply: bytes, hold: bool, stop: threading.Event) -> None:
    """Read the request, send ``reply`` (maybe nothing), then hold the connection if ``hold``.

    Held connections close after ``STALL_S`` seconds at most (sooner once ``stop`` is set).
    """
    with conn:
        conn.settimeout(STALL_S)
        try:
            conn.recv(65536)
            conn.sendall(reply)
        except OSError:
            return
        if hold:
            stop.wait(STALL_S)


@pytest.fixture
def stalled_server() -> Iterator[Callable[..., str]]:
    """Start a loopback server answering every request with given bytes, then stalling.

    Returns a function ``start(reply, hold=True) -> base URL``; ``hold=False`` closes each
    connection right after the reply. Each connection is closed after
    ``STALL_S`` seconds at most, and all of them at teardown; threads are daemons.
    """
    stop = threading.Event()
    listeners: List[socket.socket] = []
    threads: List[threading.Thread] = []

    def accept_loop(listener: socket.socket, reply: bytes, hold: bool) -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except socket.timeout:
                continue
            except OSError:  # closed at teardown
                return
            worker = threading.Thread(
                target=_stall_connection, args=(conn, reply, hold, stop), daemon=True
            )
            worker.start()
            threads.append(worker)

    def start(reply: bytes, hold: bool = True) -> str:
        listener = socket.create_server(('127.0.0.1', 0))
        listener.settimeout(0.2)
        listeners.append(listener)
        thread = threading.Thread(target=accept_loop, args=(listener, reply, hold), daemon=True)
        thread.start()
        threads.append(thread)
        return f'http://127.0.0.1:{listener.getsockname()[1]}'

    yield start
    stop.set()
    for listener in listeners:
        listener.close()
    for thread in threads:
        thread.join(STALL_S)


def _tree(root: Path, skip: str) -> Dict[str, int]:
    """Every path under ``root`` except those under ``skip`` -> file size (-1 for dirs)."""
    found = {}
    for path in root.rglob('*'):
        if not str(path).startswith(skip):
            found[str(path.relative_to(root))] = path.stat().st_size if path.is_file() else -1
    return found


# -- item 4: mmengine's URL loads go through the safe loader ------------------------------


def test_url_scheme_is_registered_idempotently():
    register_safe_url_loader()
    register_safe_url_loader()
    for url in ('http://example.invalid/a.pth', 'https://example.invalid/a.pth'):
        assert CheckpointLoader._get_checkpoint_loader(url) is load_from_http_safely


def test_mmengine_load_checkpoint_refuses_malicious_url(served, tmp_path):
    root, base = served
    marker = tmp_path / 'pwned.txt'
    save_evil(root / 'evil.pth', marker)
    url = f'{base}/evil.pth'
    with pytest.raises(UnsafeCheckpointError, match='NOT unpickled'):
        load_checkpoint(small_model(1), url, map_location='cpu')
    assert not marker.exists()
    with pytest.raises(UnsafeCheckpointError):
        CheckpointLoader.load_checkpoint(url, map_location='cpu')  # what load_from does
    assert not marker.exists() and not osp.exists(url_cache_path(url))


def test_pretrained_init_cfg_url_is_safe(served, tmp_path):
    """``init_cfg=dict(type='Pretrained', checkpoint=URL)``: good files load, evil ones don't."""
    root, base = served
    torch.save({'state_dict': {'net.' + k: v for k, v in small_model(0).state_dict().items()}},
               root / 'good.pth')  # fmt: skip
    marker = tmp_path / 'pwned.txt'
    save_evil(root / 'evil.pth', marker)

    class Wrapped(BaseModule):
        def __init__(self, checkpoint: str) -> None:
            super().__init__(init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
            self.net = small_model(1)

    good = Wrapped(f'{base}/good.pth')
    good.init_weights()
    assert torch.equal(good.net[0].weight, small_model(0)[0].weight)
    with pytest.raises(UnsafeCheckpointError):
        Wrapped(f'{base}/evil.pth').init_weights()
    assert not marker.exists()


def test_mmengine_url_load_keeps_map_location(served):
    root, base = served
    torch.save({'state_dict': small_model(0).state_dict()}, root / 'w.pth')
    seen = []
    checkpoint = CheckpointLoader.load_checkpoint(
        f'{base}/w.pth', map_location=lambda storage, loc: seen.append(loc) or storage
    )
    assert seen and torch.equal(checkpoint['state_dict']['0.bias'], small_model(0)[0].bias)


# -- item 5: cache key, timeouts, removal of bad files, path safety, ranks -----------------


def test_same_file_name_different_urls_are_different_checkpoints(served):
    root, base = served
    for name, seed in (('a', 0), ('b', 1)):
        (root / name).mkdir()
        torch.save({'state_dict': small_model(seed).state_dict()}, root / name / 'teacher.pth')
    first = read_checkpoint(f'{base}/a/teacher.pth')['state_dict']
    second = CheckpointLoader.load_checkpoint(f'{base}/b/teacher.pth', map_location='cpu')
    assert torch.equal(first['0.weight'], small_model(0)[0].weight)
    assert torch.equal(second['state_dict']['0.weight'], small_model(1)[0].weight)
    assert RecordingHandler.requests == ['/a/teacher.pth', '/b/teacher.pth']


def test_cache_path_is_keyed_by_the_whole_url(torch_home):
    paths = {url_cache_path(f'http://h/w.pth?v={v}') for v in (1, 2)}
    paths |= {url_cache_path('https://h/w.pth'), url_cache_path('http://other/w.pth')}
    assert len(paths) == 4
    for path in paths:
        assert osp.dirname(path) == url_cache_dir() and path.endswith('-w.pth')
    assert url_cache_path('http://h/a%20b;c.pth').endswith('-a20bc.pth')


@pytest.mark.parametrize(
    'reply',
    [
        b'',  # accepts, sends nothing
        b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n',  # headers only
        b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + b'x' * 100,  # part of the body
    ],
    ids=['nothing', 'headers', 'partial-body'],
)
def test_stalled_server_times_out(stalled_server, torch_home, monkeypatch, reply):
    monkeypatch.setenv(TIMEOUT_ENV, '1')
    url = f'{stalled_server(reply)}/teacher.pth'
    start = time.monotonic()
    with pytest.raises(FileNotFoundError) as info:
        read_checkpoint(url)
    assert time.monotonic() - start < STALL_S - 2
    msg = str(info.value)
    assert url in msg and url_cache_path(url) in msg and TIMEOUT_ENV in msg
    assert os.listdir(url_cache_dir()) == []  # no partial file, no cache entry


def test_truncated_download_is_an_error(stalled_server, torch_home):
    reply = b'HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n' + b'x' * 100
    url = f'{stalled_server(reply, hold=False)}/teacher.pth'
    with pytest.raises(FileNotFoundError, match='100 of 1000 bytes') as info:
        read_checkpoint(url)
    assert url in str(info.value) and TIMEOUT_ENV not in str(info.value)
    assert os.listdir(url_cache_dir()) == []


@pytest.mark.parametrize('value', ['0', '-1', 'abc', 'nan', 'inf'])
def test_invalid_timeout_is_a_clear_error(monkeypatch, torch_home, value):
    monkeypatch.setenv(TIMEOUT_ENV, value)
    with pytest.raises(ValueError, match=TIMEOUT_ENV):
        download_timeout()
    with pytest.raises(ValueError, match=TIMEOUT_ENV):
        read_checkpoint('http://127.0.0.1:9/never-contacted.pth')


@pytest.mark.parametrize('content', ['garbage', 'not-a-dict'])
def test_corrupt_download_is_removed_from_the_cache(served, content):
    root, base = served
    if content == 'garbage':
        (root / 'bad.pth').write_bytes(b'<html>not a checkpoint</html>')
    else:
        torch.save([torch.zeros(2)], root / 'bad.pth')
    url = f'{base}/bad.pth'
    for attempt in (1, 2):  # deleted, so the second run downloads again
        with pytest.raises(ValueError) as info:
            read_checkpoint(url)
        assert 'deleted from the cache' in str(info.value) and url in str(info.value)
        assert not osp.exists(url_cache_path(url))
        assert RecordingHandler.requests == ['/bad.pth'] * attempt


@pytest.mark.parametrize('path', ['/..', '/a/..', '/../x', '/%2e%2e', '/..?v=1'])
def test_dot_dot_url_writes_only_into_the_cache(served, tmp_path, path):
    root, base = served
    torch.save({'state_dict': small_model(0).state_dict()}, root / 'x')
    (root / 'a').mkdir()
    os.makedirs(url_cache_dir())
    before = _tree(tmp_path, url_cache_dir())
    try:
        read_checkpoint(base + path)
    except (ValueError, OSError):  # '/..' serves a directory listing: not a checkpoint
        pass
    assert _tree(tmp_path, url_cache_dir()) == before
    assert osp.dirname(url_cache_path(base + path)) == url_cache_dir()


@pytest.mark.parametrize('kind', ['unsafe', 'corrupt'])
def test_only_rank_0_deletes_a_refused_download(served, tmp_path, monkeypatch, kind):
    root, base = served
    if kind == 'unsafe':
        save_evil(root / 'bad.pth', tmp_path / 'pwned.txt')
    else:
        (root / 'bad.pth').write_bytes(b'garbage')
    url = f'{base}/bad.pth'
    monkeypatch.setattr(remote_checkpoint, 'get_dist_info', lambda: (1, 2))
    with pytest.raises(ValueError, match='rank 0 deletes'):
        read_checkpoint(url)
    assert osp.isfile(url_cache_path(url))  # rank 1 leaves it to rank 0
    monkeypatch.setattr(remote_checkpoint, 'get_dist_info', lambda: (0, 2))
    with pytest.raises(ValueError, match='deleted from the cache'):
        read_checkpoint(url)  # found in the cache, refused, deleted
    assert not osp.exists(url_cache_path(url)) and RecordingHandler.requests == ['/bad.pth']
    assert not (tmp_path / 'pwned.txt').exists()


def test_progress_only_on_a_terminal(served, monkeypatch, capsys):
    root, base = served
    torch.save({'state_dict': small_model(0).state_dict()}, root / 'w.pth')
    read_checkpoint(f'{base}/w.pth')
    assert capsys.readouterr().err == ''
    monkeypatch.setattr('sys.stderr.isatty', lambda: True)
    read_checkpoint(f'{base}/w.pth?again')
    assert 'MiB' in capsys.readouterr().err
