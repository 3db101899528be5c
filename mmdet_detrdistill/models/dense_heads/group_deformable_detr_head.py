"""Deformable DETR's head whose ground-truth losses take the assigners as arguments."""

import copy
from typing import Dict, List, Optional, Sequence

import torch
from mmdet.models.dense_heads import DeformableDETRHead
from mmdet.registry import MODELS
from mmdet.utils import InstanceList, OptInstanceList
from torch import Tensor

from .layer_assigners_mixin import LOSS_NAMES, DecoderLoss, ImageAssigners, LayerAssignersMixin


@MODELS.register_module()
class GroupDeformableDETRHead(LayerAssignersMixin, DeformableDETRHead):
    """``DeformableDETRHead`` whose ``loss_by_feat`` takes ``layer_assigners``
    (:class:`LayerAssignersMixin`); the head of :class:`GroupDeformableDETR`.

    The decoder layers are assigned by the given assigners; the two-stage
    encoder proposals always by the head's own (their GT labels all 0:
    mmdet's class-agnostic proposals). Same parameters, forward and
    predictions as mmdet's; without assigners, the same losses.
    """

    def loss_by_feat_kwargs(self, head_inputs: Dict) -> Dict:
        """The encoder proposals' logits and boxes (two-stage, training; else None)."""
        return dict(
            enc_cls_scores=head_inputs.get('enc_outputs_class'),
            enc_bbox_preds=head_inputs.get('enc_outputs_coord'),
        )

    def loss_by_feat(
        self,
        all_layers_cls_scores: Tensor,
        all_layers_bbox_preds: Tensor,
        enc_cls_scores: Optional[Tensor],
        enc_bbox_preds: Optional[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        batch_gt_instances_ignore: OptInstanceList = None,
        layer_assigners: Optional[Sequence[ImageAssigners]] = None,
        decoder_loss: Optional[DecoderLoss] = None,
    ) -> Dict[str, Tensor]:
        """mmdet's ``DeformableDETRHead.loss_by_feat`` (copied: it calls ``DETRHead``'s
        without assigners), decoder layer l assigned by ``layer_assigners[l]``.

        Args:
            all_layers_cls_scores (Tensor): Logits, (num_layers, bs, N, C).
            all_layers_bbox_preds (Tensor): Normalised cxcywh boxes, (num_layers, bs, N, 4).
            enc_cls_scores (Tensor, optional): Encoder proposal logits, (bs, M, C); None
                without proposals (one-stage, or eval mode).
            enc_bbox_preds (Tensor, optional): Their boxes, (bs, M, 4).
            batch_gt_instances (list[InstanceData]): Ground truth per image.
            batch_img_metas (list[dict]): Image metas.
            batch_gt_instances_ignore (list, optional): Must be None, as in mmdet.
            layer_assigners (Sequence, optional): Per decoder layer, one assigner per image
                or None. Defaults to None: the head's everywhere.
            decoder_loss (DecoderLoss, optional): Computes the decoder layers' losses
                instead of the head's steps (:meth:`LayerAssignersMixin.loss_by_feat`).
                Defaults to None.

        Returns:
            dict[str, Tensor]: mmdet's keys in mmdet's order, then ``enc_loss_*``.
        """
        loss_dict = super().loss_by_feat(
            all_layers_cls_scores,
            all_layers_bbox_preds,
            batch_gt_instances,
            batch_img_metas,
            batch_gt_instances_ignore,
            layer_assigners=layer_assigners,
            decoder_loss=decoder_loss,
        )
        if enc_cls_scores is not None:
            proposal_gt_instances = copy.deepcopy(batch_gt_instances)
            for gts in proposal_gt_instances:
                gts.labels = torch.zeros_like(gts.labels)
            enc = self.loss_by_feat_single(
                enc_cls_scores, enc_bbox_preds, proposal_gt_instances, batch_img_metas
            )
            loss_dict.update({f'enc_{name}': v for name, v in zip(LOSS_NAMES, enc)})
        return loss_dict
