"""Distiller detectors (registered in mmdet's ``MODELS``)."""

from .base_distiller import DETRDistillerBase
from .d3etr_distiller import D3ETRDistiller
from .decoder_outputs import DecoderOutputs

__all__ = ['D3ETRDistiller', 'DETRDistillerBase', 'DecoderOutputs']
