"""Build any model config of this repo without downloads, for a one-step smoke test."""

from typing import Any, Dict, Optional

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


def load_config(config_path: str, cfg_options: Optional[Dict[str, Any]] = None) -> Config:
    """A config file with ``cfg_options`` merged in, as mmdet's tools take ``--cfg-options``
    (``{'model.init_query': None}``)."""
    cfg = Config.fromfile(config_path)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg


def smoke_model_cfg(config_path: str, cfg_options: Optional[Dict[str, Any]] = None) -> ConfigDict:
    """The ``model`` of a config file (with ``cfg_options`` merged in), made buildable offline.

    Pretrained initialisations are dropped; a distiller's external teacher
    config is inlined, its checkpoint removed and an untrained teacher allowed.
    """
    model = load_config(config_path, cfg_options).model
    if 'teacher' in model:  # OD-DETR's teacher is the student's EMA
        model.teacher = load_teacher_model_cfg(model.teacher)
        model.teacher_ckpt = None
        model.allow_untrained_teacher = True
    return strip_pretrained(model)
