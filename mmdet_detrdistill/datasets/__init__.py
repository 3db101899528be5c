"""Dataset utilities: the deterministic synthetic COCO-format dataset."""

from .synthetic_coco import SYNTH_CLASSES, SYNTH_PALETTE, generate_image, make_synthetic_coco

__all__ = ['SYNTH_CLASSES', 'SYNTH_PALETTE', 'generate_image', 'make_synthetic_coco']
