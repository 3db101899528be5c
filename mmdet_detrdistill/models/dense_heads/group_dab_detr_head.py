"""DAB-DETR's head whose ground-truth losses take the assigners as arguments."""

from mmdet.models.dense_heads import DABDETRHead
from mmdet.registry import MODELS

from .layer_assigners_mixin import LayerAssignersMixin


@MODELS.register_module()
class GroupDABDETRHead(LayerAssignersMixin, DABDETRHead):
    """``DABDETRHead`` whose ``loss_by_feat`` takes ``layer_assigners``
    (:class:`LayerAssignersMixin`); the head of :class:`GroupDABDETR`.

    Same parameters, forward and predictions as mmdet's; without assigners,
    the same losses.
    """
