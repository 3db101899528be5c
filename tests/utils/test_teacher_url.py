"""``model.teacher_ckpt`` as an http(s) URL or an mmengine fileio path, against a loopback server.

Properties: a URL is downloaded once into the URL cache (shared with mmengine's ``load_from``,
which goes through the same safe loader once the package is imported), then loaded by the same
strict, safe loader as a local file; a malicious pickle is refused from a URL or a backend as
from a disk; a 404 or an unreachable host is an error naming the URL and the cache path.
"""

import importlib.util
import os
import os.path as osp
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.fileio import register_backend
from mmengine.fileio.backends import BaseStorageBackend
from mmengine.fileio.io import prefix_to_backends
from mmengine.registry import DefaultScope
from mmengine.runner.checkpoint import CheckpointLoader
from url_helpers import OpenPayload, RecordingHandler, small_model

from mmdet_detrdistill.testing import (
    REPO_ROOT,
    distiller_cfg,
    free_port,
    tiny_conditional_detr_cfg,
)
from mmdet_detrdistill.utils.checkpoint import UnsafeCheckpointError, load_weights_strictly
from mmdet_detrdistill.utils.remote_checkpoint import url_cache_path


def test_url_loads_strictly_from_the_load_from_cache_once(served, tmp_path):
    root, base = served
    source = small_model(0)
    torch.save({'state_dict': source.state_dict(), 'meta': {}}, root / 'teacher-0123abcd.pth')
    url = f'{base}/teacher-0123abcd.pth'

    # mmengine's load_from fills the cache first; ours finds the file there and does not fetch
    mmengine_ckpt = CheckpointLoader.load_checkpoint(url, map_location='cpu')
    assert RecordingHandler.requests == ['/teacher-0123abcd.pth']
    cache = Path(url_cache_path(url))
    assert cache.parent == tmp_path / 'torch_home' / 'hub' / 'checkpoints' and cache.is_file()
    assert cache.name.endswith('-teacher-0123abcd.pth')
    target = small_model(1)
    load_weights_strictly(target, url)
    load_weights_strictly(target, url)
    assert RecordingHandler.requests == ['/teacher-0123abcd.pth']
    for key, value in source.state_dict().items():
        assert torch.equal(target.state_dict()[key], value)
        assert torch.equal(mmengine_ckpt['state_dict'][key], value)


def test_url_downloads_when_not_cached(served, tmp_path):
    root, base = served
    torch.save(small_model(0).state_dict(), root / 'w.pth')
    target = small_model(1)
    load_weights_strictly(target, f'{base}/w.pth')
    assert RecordingHandler.requests == ['/w.pth']
    assert Path(url_cache_path(f'{base}/w.pth')).is_file()
    assert url_cache_path(f'{base}/w.pth').startswith(str(tmp_path / 'torch_home'))
    assert torch.equal(target[0].weight, small_model(0)[0].weight)


def test_malicious_pickle_from_url_is_refused(served, tmp_path):
    root, base = served
    marker = tmp_path / 'pwned.txt'
    torch.save({'state_dict': {'w': torch.zeros(2)}, 'meta': OpenPayload(str(marker))},
               root / 'evil.pth')  # fmt: skip
    url = f'{base}/evil.pth'
    with pytest.raises(UnsafeCheckpointError) as info:
        load_weights_strictly(small_model(0), url)
    msg = str(info.value)
    assert url in msg and url_cache_path(url) in msg and 'NOT unpickled' in msg
    assert not marker.exists()
    # gone from the cache, where mmengine's load_from (weights_only=False) would unpickle it
    assert not osp.exists(url_cache_path(url)) and 'deleted from the cache' in msg


def test_404_names_url_and_cache(served):
    _, base = served
    url = f'{base}/missing.pth'
    with pytest.raises(FileNotFoundError) as info:
        load_weights_strictly(small_model(0), url)
    msg = str(info.value)
    assert url in msg and url_cache_path(url) in msg and '404' in msg
    assert 'model.teacher_ckpt' in msg and not osp.exists(url_cache_path(url))


def test_offline_names_url_and_cache(tmp_path, monkeypatch):
    monkeypatch.setenv('TORCH_HOME', str(tmp_path))
    url = f'http://127.0.0.1:{free_port()}/teacher.pth'  # nothing listens there
    with pytest.raises(FileNotFoundError) as info:
        load_weights_strictly(small_model(0), url)
    msg = str(info.value)
    assert url in msg and url_cache_path(url) in msg and str(tmp_path) in msg


def test_distiller_teacher_ckpt_url(served):
    """What a user writes: ``model.teacher_ckpt=http(s)://...``."""
    root, base = served
    teacher_cfg = tiny_conditional_detr_cfg(num_classes=3)
    with DefaultScope.overwrite_default_scope('mmdet'):
        reference = MODELS.build(teacher_cfg)
    reference.init_weights()
    torch.save({'state_dict': reference.state_dict()}, root / 'tiny-teacher.pth')
    cfg = distiller_cfg(tiny_conditional_detr_cfg(num_classes=3), teacher_cfg)
    cfg.update(teacher_ckpt=f'{base}/tiny-teacher.pth', allow_untrained_teacher=False)
    with DefaultScope.overwrite_default_scope('mmdet'):  # a Runner elsewhere may have changed it
        distiller = MODELS.build(cfg)
    distiller.load_teacher_weights()  # what init_weights does when training starts
    for key, value in reference.state_dict().items():
        assert torch.equal(distiller.teacher.state_dict()[key], value), key


class _BytesBackend(BaseStorageBackend):
    """A storage backend that only returns bytes (no ``get_local_path``), like memcached."""

    files: dict = {}

    def get(self, filepath):
        return self.files[str(filepath)]

    def get_text(self, filepath, encoding='utf-8'):
        return self.get(filepath).decode(encoding)


if 'ddtest' not in prefix_to_backends:
    register_backend('ddtest', _BytesBackend, prefixes='ddtest')


def test_storage_backend_path_loads_safely(tmp_path):
    torch.save(small_model(0).state_dict(), tmp_path / 'good.pth')
    marker = tmp_path / 'pwned.txt'
    torch.save({'meta': OpenPayload(str(marker))}, tmp_path / 'evil.pth')
    for name in ('good', 'evil'):
        _BytesBackend.files[f'ddtest://bucket/{name}.pth'] = (tmp_path / f'{name}.pth').read_bytes()
    target = small_model(1)
    load_weights_strictly(target, 'ddtest://bucket/good.pth')
    assert torch.equal(target[2].bias, small_model(0)[2].bias)
    with pytest.raises(UnsafeCheckpointError, match='ddtest://bucket/evil.pth'):
        load_weights_strictly(target, 'ddtest://bucket/evil.pth')
    assert not marker.exists()


def test_unknown_scheme_is_a_clear_error():
    with pytest.raises(FileNotFoundError, match='nosuchscheme://x/t.pth'):
        load_weights_strictly(small_model(0), 'nosuchscheme://x/t.pth')


def test_local_path_is_unchanged(tmp_path):
    path = tmp_path / 'local.pth'
    torch.save(small_model(0).state_dict(), path)
    target = small_model(1)
    load_weights_strictly(target, os.fspath(path))
    assert torch.equal(target[0].bias, small_model(0)[0].bias)


def _fetch_main():
    """``main`` of tools/model_converters/fetch_checkpoint.py."""
    spec = importlib.util.spec_from_file_location(
        'fetch_checkpoint', osp.join(REPO_ROOT, 'tools', 'model_converters', 'fetch_checkpoint.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_fetch_tool_prefills_the_load_from_cache_safely(served, tmp_path, capsys):
    """tools/model_converters/fetch_checkpoint.py: a safe file is cached for load_from, a
    malicious one is not."""
    root, base = served
    torch.save({'state_dict': small_model(0).state_dict()}, root / 'zoo.pth')
    marker = tmp_path / 'pwned.txt'
    torch.save({'meta': OpenPayload(str(marker))}, root / 'evil.pth')
    assert _fetch_main()([f'{base}/zoo.pth']) == 0
    assert url_cache_path(f'{base}/zoo.pth') in capsys.readouterr().out
    CheckpointLoader.load_checkpoint(f'{base}/zoo.pth', map_location='cpu')  # load_from
    assert RecordingHandler.requests == ['/zoo.pth']  # served from the cache
    assert _fetch_main()([f'{base}/evil.pth', f'{base}/missing.pth']) == 1
    err = capsys.readouterr().err
    assert 'NOT unpickled' in err and '404' in err
    assert not osp.exists(url_cache_path(f'{base}/evil.pth')) and not marker.exists()
