"""mmengine's model-zoo checkpoint schemes go through the safe loader, against loopback servers.

Properties: after ``import mmdet_detrdistill``, ``torchvision://`` / ``modelzoo://``,
``open-mmlab://`` / ``openmmlab://`` and ``mmcls://`` names resolve to the URL mmengine would
use (the tables are pointed at a server on 127.0.0.1 here), which is then downloaded into the
whole-URL cache and loaded with ``weights_only=True``: a malicious pickle is refused and never
unpickled, whether through ``CheckpointLoader`` (what ``load_from`` uses) or an ``init_cfg``
Pretrained; a good file loads; an open-mmlab entry that is a local file is loaded by the safe
local loader; an unknown name is a clear error; ``torchvision://resnet50`` resolves without
torchvision installed.
"""

import json
import logging
import os.path as osp
import sys
from pathlib import Path
from typing import Iterator, List

import mmengine
import pytest
import torch
from mmengine.logging import MMLogger
from mmengine.model import BaseModule
from mmengine.runner import checkpoint as mmengine_checkpoint
from mmengine.runner.checkpoint import CheckpointLoader
from url_helpers import save_evil, small_model

from mmdet_detrdistill.utils import url_loader
from mmdet_detrdistill.utils.checkpoint import UnsafeCheckpointError
from mmdet_detrdistill.utils.remote_checkpoint import url_cache_path

ZOO_PREFIXES = ('torchvision://', 'modelzoo://', 'open-mmlab://', 'openmmlab://', 'mmcls://')


class _ListHandler(logging.Handler):
    def __init__(self, records: List[logging.LogRecord]) -> None:
        super().__init__()
        self.records = records

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def homes(tmp_path, monkeypatch) -> Path:
    """Fresh ``$TORCH_HOME`` (URL cache) and ``$MMENGINE_HOME`` (open-mmlab tables, files)."""
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    mmengine_home = tmp_path / 'mmengine_home'
    monkeypatch.setenv('MMENGINE_HOME', str(mmengine_home))
    return mmengine_home


@pytest.fixture
def logged() -> Iterator[List[logging.LogRecord]]:
    """The records mmengine's current logger emits during the test."""
    records: List[logging.LogRecord] = []
    handler = _ListHandler(records)
    logger = MMLogger.get_current_instance()
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def _save_good(path: Path, prefix: str = '') -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {prefix + k: v for k, v in small_model(0).state_dict().items()}
    torch.save({'state_dict': state}, path)


def _messages(records: List[logging.LogRecord], level: int) -> List[str]:
    return [r.getMessage() for r in records if r.levelno == level]


def test_zoo_schemes_are_registered_idempotently():
    url_loader.register_safe_url_loader()
    url_loader.register_safe_url_loader()
    for prefix in ZOO_PREFIXES + ('http://', 'https://'):
        loader = CheckpointLoader._get_checkpoint_loader(f'{prefix}some_name')
        assert loader.__module__ == url_loader.__name__, prefix


@pytest.mark.parametrize('prefix', ['torchvision://', 'modelzoo://'])
def test_torchvision_scheme_refuses_malicious_file(served, tmp_path, monkeypatch, logged, prefix):
    root, base = served
    marker = tmp_path / 'pwned.txt'
    save_evil(root / 'evil.pth', marker)
    url = f'{base}/evil.pth'
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models', lambda: {'resnet_test': url})
    with pytest.raises(UnsafeCheckpointError, match='NOT unpickled'):
        CheckpointLoader.load_checkpoint(f'{prefix}resnet_test', map_location='cpu')
    assert not marker.exists() and not osp.exists(url_cache_path(url))
    deprecation = [m for m in _messages(logged, logging.WARNING) if 'modelzoo://' in m]
    assert bool(deprecation) == (prefix == 'modelzoo://')


def test_pretrained_init_cfg_torchvision_is_safe(served, tmp_path, monkeypatch):
    """``init_cfg=dict(type='Pretrained', checkpoint='torchvision://...')``, as mmdet uses it."""
    root, base = served
    _save_good(root / 'good.pth', prefix='net.')
    marker = tmp_path / 'pwned.txt'
    save_evil(root / 'evil.pth', marker)
    table = {'resnet_test': f'{base}/good.pth', 'resnet_evil': f'{base}/evil.pth'}
    monkeypatch.setattr(mmengine_checkpoint, 'get_torchvision_models', lambda: table)

    class Wrapped(BaseModule):
        def __init__(self, checkpoint: str) -> None:
            super().__init__(init_cfg=dict(type='Pretrained', checkpoint=checkpoint))
            self.net = small_model(1)

    with pytest.raises(UnsafeCheckpointError):
        Wrapped('torchvision://resnet_evil').init_weights()
    assert not marker.exists() and not osp.exists(url_cache_path(table['resnet_evil']))
    good = Wrapped('torchvision://resnet_test')
    good.init_weights()
    assert torch.equal(good.net[0].weight, small_model(0)[0].weight)
    assert osp.isfile(url_cache_path(table['resnet_test']))  # through the whole-URL cache


@pytest.mark.parametrize('prefix', ['open-mmlab://', 'openmmlab://'])
def test_openmmlab_scheme_is_safe(served, tmp_path, homes, monkeypatch, logged, prefix):
    """URL entries and local-file entries of mmengine's open-mmlab tables are loaded safely."""
    root, base = served
    marker = tmp_path / 'pwned.txt'
    _save_good(root / 'good.pth')
    save_evil(root / 'evil.pth', marker)
    _save_good(homes / 'local' / 'good.pth')
    save_evil(homes / 'local' / 'evil.pth', marker)
    table = {
        'x': f'{base}/good.pth',
        'x_evil': f'{base}/evil.pth',
        'local_x': 'local/good.pth',
        'local_evil': 'local/evil.pth',
        'local_missing': 'local/missing.pth',
    }
    # mmengine's own external table, read by its get_external_models()
    (homes / 'open_mmlab.json').write_text(json.dumps(table))
    monkeypatch.setattr(mmengine_checkpoint, 'get_deprecated_model_names', lambda: {'old_x': 'x'})

    for name in ('x_evil', 'local_evil'):
        with pytest.raises(UnsafeCheckpointError, match='NOT unpickled'):
            CheckpointLoader.load_checkpoint(f'{prefix}{name}', map_location='cpu')
    assert not marker.exists() and not osp.exists(url_cache_path(table['x_evil']))
    for name in ('x', 'local_x', 'old_x'):
        checkpoint = CheckpointLoader.load_checkpoint(f'{prefix}{name}', map_location='cpu')
        assert torch.equal(checkpoint['state_dict']['0.weight'], small_model(0)[0].weight), name
    assert osp.isfile(url_cache_path(table['x']))  # through the whole-URL cache
    assert f'{prefix}old_x is deprecated in favor of {prefix}x' in _messages(
        logged, logging.WARNING
    )
    with pytest.raises(FileNotFoundError, match='missing.pth'):
        CheckpointLoader.load_checkpoint(f'{prefix}local_missing')


def test_mmcls_scheme_is_safe(served, tmp_path, monkeypatch):
    root, base = served
    marker = tmp_path / 'pwned.txt'
    _save_good(root / 'good.pth', prefix='backbone.')
    save_evil(root / 'evil.pth', marker)
    table = {'y': f'{base}/good.pth', 'y_evil': f'{base}/evil.pth'}
    monkeypatch.setattr(mmengine_checkpoint, 'get_mmcls_models', lambda: table)

    with pytest.raises(UnsafeCheckpointError, match='NOT unpickled'):
        CheckpointLoader.load_checkpoint('mmcls://y_evil', map_location='cpu')
    assert not marker.exists() and not osp.exists(url_cache_path(table['y_evil']))
    seen = []
    checkpoint = CheckpointLoader.load_checkpoint(
        'mmcls://y', map_location=lambda storage, loc: seen.append(loc) or storage
    )
    assert seen and osp.isfile(url_cache_path(table['y']))  # through the whole-URL cache
    # reduced to the backbone by mmengine's _process_mmcls_checkpoint
    assert set(checkpoint) == {'state_dict'}
    assert set(checkpoint['state_dict']) == set(small_model(0).state_dict())
    assert torch.equal(checkpoint['state_dict']['0.weight'], small_model(0)[0].weight)


@pytest.mark.parametrize(
    'prefix, source',
    [
        ('torchvision://', 'torchvision_0.12.json'),
        ('modelzoo://', 'torchvision_0.12.json'),
        ('open-mmlab://', 'open_mmlab.json'),
        ('openmmlab://', 'openmmlab.json'),
        ('mmcls://', 'mmcls.json'),
    ],
)
def test_unknown_model_name_is_a_clear_error(monkeypatch, prefix, source):
    monkeypatch.setitem(sys.modules, 'torchvision', None)  # not installed, whatever the machine
    with pytest.raises(KeyError) as info:
        CheckpointLoader.load_checkpoint(f'{prefix}no_such_model')
    assert type(info.value) is not KeyError and isinstance(info.value, ValueError)
    msg = str(info.value)
    assert f'{prefix}no_such_model' in msg and "'no_such_model'" in msg and source in msg
    assert not msg.startswith('"')  # not a KeyError's quoted repr


def test_close_names_are_suggested(monkeypatch):
    monkeypatch.setitem(sys.modules, 'torchvision', None)
    with pytest.raises(KeyError, match=r'Did you mean torchvision://resnet50\b'):
        CheckpointLoader.load_checkpoint('torchvision://resnet5O')


def test_torchvision_names_resolve_without_torchvision(monkeypatch):
    """mmengine's get_torchvision_models imports torchvision; the bundled table is used then."""
    monkeypatch.setitem(sys.modules, 'torchvision', None)
    with pytest.raises(ModuleNotFoundError):
        mmengine_checkpoint.get_torchvision_models()
    with open(osp.join(mmengine.__path__[0], 'hub', 'torchvision_0.12.json')) as f:
        expected = json.load(f)['resnet50']
    assert expected == 'https://download.pytorch.org/models/resnet50-0676ba61.pth'
    assert url_loader.resolve_model_url('torchvision://resnet50') == expected
    assert url_loader.resolve_model_url('modelzoo://resnet50') == expected
    assert 'torchvision_0.12.json' in url_loader.torchvision_model_urls()[1]
