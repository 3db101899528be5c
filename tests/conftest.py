"""Shared pytest setup: registrations and deterministic seeds."""

import pytest
import torch
from mmdet.utils import register_all_modules

import mmdet_detrdistill  # noqa: F401  (registers our modules)

register_all_modules()  # mmdet's default scope, as in mmdet's own tests


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    yield
