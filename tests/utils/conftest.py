"""Fixtures of the URL-loading tests (helpers in ``url_helpers.py``)."""

from pathlib import Path
from typing import Iterator, Tuple

import pytest
from url_helpers import serve_directory


@pytest.fixture
def served(tmp_path, monkeypatch) -> Iterator[Tuple[Path, str]]:
    """(directory served over http on 127.0.0.1, base URL); ``$TORCH_HOME`` (the URL cache) is
    ``tmp_path / 'torch_home'``. ``RecordingHandler.requests`` lists the paths fetched."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    root = tmp_path / 'www'
    root.mkdir()
    with serve_directory(root) as base:
        yield root, base
