"""Dataset utilities: the deterministic synthetic COCO-format datasets (shapes, clutter)."""

from .synthetic_coco import (
    STYLES,
    SYNTH_CLASSES,
    SYNTH_PALETTE,
    generate_image,
    make_synthetic_coco,
)

__all__ = ['STYLES', 'SYNTH_CLASSES', 'SYNTH_PALETTE', 'generate_image', 'make_synthetic_coco']
