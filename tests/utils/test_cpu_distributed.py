"""setup_cpu_distributed / close_distributed: mmdet's launchers on a CPU, ended cleanly."""

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config

from mmdet_detrdistill.testing import free_port
from mmdet_detrdistill.utils.cpu_distributed import close_distributed, setup_cpu_distributed

CPU_ONLY = pytest.mark.skipif(torch.cuda.is_available(), reason='with CUDA, mmengine sets up DDP')


@CPU_ONLY
def test_gloo_backend_is_set_without_env_cfg(monkeypatch):
    _single_process_env(monkeypatch)
    cfg = Config(dict(launcher='pytorch'))
    try:
        assert setup_cpu_distributed(cfg)
        assert cfg.env_cfg.dist_cfg.backend == 'gloo'
    finally:
        close_distributed()


def _single_process_env(monkeypatch) -> None:
    env = dict(MASTER_ADDR='127.0.0.1', MASTER_PORT=str(free_port()), RANK='0', WORLD_SIZE='1')
    for key, value in env.items():
        monkeypatch.setenv(key, value)


def test_no_launcher_changes_nothing():
    cfg = Config(dict(launcher='none'))
    assert not setup_cpu_distributed(cfg)
    assert 'model_wrapper_cfg' not in cfg and not dist.is_initialized()


@CPU_ONLY
def test_cpu_launcher_gets_gloo_and_no_device_ids_then_closes(monkeypatch):
    _single_process_env(monkeypatch)
    cfg = Config(
        dict(
            launcher='pytorch',
            env_cfg=dict(cudnn_benchmark=False, dist_cfg=dict(backend='nccl', timeout=7)),
            model_wrapper_cfg=dict(find_unused_parameters=False),
        )
    )
    try:
        assert setup_cpu_distributed(cfg)
        assert dist.is_initialized() and dist.get_backend() == 'gloo'
        assert cfg.env_cfg.dist_cfg == dict(backend='gloo', timeout=7)  # the rest is kept
        assert cfg.env_cfg.cudnn_benchmark is False
        assert cfg.model_wrapper_cfg.device_ids is None
        assert cfg.model_wrapper_cfg.type == 'MMDistributedDataParallel'
        assert cfg.model_wrapper_cfg.find_unused_parameters is False
    finally:
        close_distributed()
    assert not dist.is_initialized()  # destroyed: no gloo threads left at interpreter exit
    close_distributed()  # and a second call is harmless
