"""Conditional DETR's head whose ground-truth losses take the assigners as arguments."""

from mmdet.models.dense_heads import ConditionalDETRHead
from mmdet.registry import MODELS

from .layer_assigners_mixin import LayerAssignersMixin


@MODELS.register_module()
class GroupConditionalDETRHead(LayerAssignersMixin, ConditionalDETRHead):
    """``ConditionalDETRHead`` whose ``loss_by_feat`` takes ``layer_assigners``
    (:class:`LayerAssignersMixin`); the head of :class:`GroupConditionalDETR`.

    Same parameters, forward and predictions as mmdet's; without assigners,
    the same losses.
    """
