"""DETR heads whose ground-truth losses take the assigner of each layer and image as arguments.

Each is mmdet's head of the family, subclassed; :func:`to_group_detector_cfg`
chooses it, as it chooses the group detector.
"""

from .group_conditional_detr_head import GroupConditionalDETRHead
from .group_dab_detr_head import GroupDABDETRHead
from .group_deformable_detr_head import GroupDeformableDETRHead
from .group_dino_head import GroupDINOHead
from .layer_assigners_mixin import (
    LOSS_NAMES,
    DecoderLoss,
    ImageAssigners,
    LayerAssignersMixin,
    decoder_loss_keys,
)

__all__ = [
    'GroupConditionalDETRHead',
    'GroupDABDETRHead',
    'GroupDeformableDETRHead',
    'GroupDINOHead',
    'DecoderLoss',
    'ImageAssigners',
    'LOSS_NAMES',
    'LayerAssignersMixin',
    'decoder_loss_keys',
]
