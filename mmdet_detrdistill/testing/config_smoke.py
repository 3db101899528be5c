"""Build any model config of this repo without downloads, for a one-step smoke test."""

from typing import Any

from mmengine.config import Config, ConfigDict

from ..models.distillers.teacher_config import load_teacher_model_cfg


def strip_pretrained(cfg: Any) -> Any:
    """Recursively set every ``init_cfg`` of type ``Pretrained`` to None."""
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'init_cfg' and isinstance(value, dict) and value.get('type') == 'Pretrained':
                cfg[key] = None
            else:
                strip_pretrained(value)
    elif isinstance(cfg, (list, tuple)):
        for item in cfg:
            strip_pretrained(item)
    return cfg


def smoke_model_cfg(config_path: str) -> ConfigDict:
    """The ``model`` of a config file, made buildable offline.

    Pretrained initialisations are dropped; a distiller's external teacher
    config is inlined, its checkpoint removed and an untrained teacher allowed.
    """
    model = Config.fromfile(config_path).model
    if 'teacher' in model:  # OD-DETR's teacher is the student's EMA
        model.teacher = load_teacher_model_cfg(model.teacher)
        model.teacher_ckpt = None
        model.allow_untrained_teacher = True
    return strip_pretrained(model)
