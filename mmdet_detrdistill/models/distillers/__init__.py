"""Distiller detectors (registered in mmdet's ``MODELS``)."""

from .base_distiller import DETRDistillerBase
from .configurable_distiller import ConfigurableDistiller
from .d3etr_distiller import D3ETRDistiller
from .detrdistill_distiller import DETRDistillDistiller
from .oddetr_distiller import ODDETRDistiller

__all__ = [
    'ConfigurableDistiller',
    'D3ETRDistiller',
    'DETRDistillDistiller',
    'DETRDistillerBase',
    'ODDETRDistiller',
]
