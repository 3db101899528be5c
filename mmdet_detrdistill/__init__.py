"""MMDetection plugin for knowledge distillation of DETR-family detectors.

Importing this package registers its distillers, query-group detectors,
matchers and losses in MMDetection's registries, and allow-lists the types
MMEngine writes into checkpoints so they load under ``torch.load``'s
``weights_only`` mode.
"""

from .utils.checkpoint import register_mmengine_safe_globals
from .version import __version__

register_mmengine_safe_globals()

from . import engine, models  # noqa: E402,F401  (registers into mmdet's registries)

__all__ = ['__version__']
