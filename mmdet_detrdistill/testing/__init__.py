"""Small models and batches for tests and demos (no downloads, CPU-sized).

Also the code that ``tools/`` scripts share: the embedded default's runs (``demo_runs``) and the
cost-of-distillation measurement (``step_time``), imported from their modules.
"""

from .config_smoke import smoke_model_cfg, strip_pretrained
from .synth_runs import REPO_ROOT, free_port, run_tool, synth_train_options
from .tiny_dino import tiny_dino_cfg
from .tiny_models import (
    FAMILY_CONFIGS,
    distiller_cfg,
    make_batch,
    mmdet_config_path,
    real_model_cfg,
    tiny_conditional_detr_cfg,
    tiny_detr_cfg,
)

__all__ = [
    'REPO_ROOT',
    'free_port',
    'run_tool',
    'synth_train_options',
    'FAMILY_CONFIGS',
    'distiller_cfg',
    'make_batch',
    'mmdet_config_path',
    'real_model_cfg',
    'smoke_model_cfg',
    'strip_pretrained',
    'tiny_conditional_detr_cfg',
    'tiny_detr_cfg',
    'tiny_dino_cfg',
]
