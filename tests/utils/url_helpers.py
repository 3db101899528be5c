"""What the URL-loading tests share: a loopback HTTP server and a malicious pickle.

The ``served`` fixture (``tests/utils/conftest.py``) serves a temporary directory with
:class:`RecordingHandler`; :class:`OpenPayload` is a pickle that runs code when unpickled.
"""

import builtins
import http.server
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator, List

import torch
from torch import nn


class RecordingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a directory quietly; ``requests`` lists the paths asked for, in order (emptied
    by :func:`serve_directory`)."""

    requests: List[str] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        RecordingHandler.requests.append(self.path)
        super().do_GET()

    def log_message(self, *args):  # quiet
        pass


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve ``root`` over http on 127.0.0.1 while in the block; yields the base URL."""
    RecordingHandler.requests = []

    def handler(*args, **kwargs):
        return RecordingHandler(*args, directory=str(root), **kwargs)

    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f'http://127.0.0.1:{server.server_address[1]}'
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


class OpenPayload:
    """Unpickling this creates ``target`` (a stand-in for arbitrary code execution)."""

    def __init__(self, target: str) -> None:
        self.target = target

    def __reduce__(self):
        return (builtins.open, (self.target, 'w'))


def small_model(seed: int) -> nn.Module:
    """A 4 -> 3 -> 2 MLP with weights drawn from ``seed``."""
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2))


def save_evil(path: Path, marker: Path) -> None:
    """Save a checkpoint whose ``meta`` creates ``marker`` when unpickled (parents created)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({'state_dict': small_model(0).state_dict(), 'meta': OpenPayload(str(marker))}, path)
