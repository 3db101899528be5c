"""Shared pytest setup: registrations and deterministic seeds."""

import pytest
import torch
from mmdet.utils import register_all_modules
from mmengine.registry import DefaultScope

import mmdet_detrdistill  # noqa: F401  (registers our modules)

register_all_modules()  # mmdet's default scope, as in mmdet's own tests


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield


@pytest.fixture(autouse=True)
def _mmdet_scope():
    """Each test starts in mmdet's default scope: a Runner built by an earlier test (a toy
    model, scope 'mmengine') would otherwise leave its scope current for the next one."""
    with DefaultScope.overwrite_default_scope('mmdet'):
        yield
