"""A DETR head's ground-truth losses, with the assigner of each layer and image given explicitly.

mmdet's ``DETRHead.loss_by_feat`` loops over the decoder layers and, per
layer, ``loss_by_feat_single`` -> ``get_targets`` -> ``_get_targets_single``
assigns every image with ``self.assigner``; ``DeformableDETRHead`` adds the
two-stage encoder proposals. Here the same composition takes the assigners
as arguments: ``layer_assigners[l][b]`` assigns image b in decoder layer l,
and the encoder proposals always use the head's own assigner::

    head_gt_losses
    ├── layer 0 .. L-1: layer_losses(head, cls[l], box[l], gts, metas, layer_assigners[l])
    │     └── head.loss_by_feat_single, whose get_targets assigns image b with assigners[b]
    └── encoder proposals (two-stage): layer_losses(..., labels zeroed, head.assigner)
"""

import copy
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

import torch
from mmdet.models.task_modules import BaseAssigner
from mmdet.utils import InstanceList
from torch import Tensor, nn

from .head_assignment import assigner_swapped

LOSS_NAMES = ('loss_cls', 'loss_bbox', 'loss_iou')


@contextmanager
def per_image_assigners(head: nn.Module, assigners: Sequence[BaseAssigner]) -> Iterator[None]:
    """Inside the block, ``head.get_targets`` assigns image b with ``assigners[b]``.

    Only this head instance changes (an instance attribute shadows the
    class's ``get_targets``, removed on exit); ``_get_targets_single`` and
    the losses are mmdet's.
    """

    def get_targets(
        cls_scores_list: List[Tensor],
        bbox_preds_list: List[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
    ) -> tuple:
        if len(assigners) != len(batch_img_metas):
            raise ValueError(
                f'{len(assigners)} assigners for {len(batch_img_metas)} images: give one per image'
            )
        # mirrors mmdet's DETRHead.get_targets (no hook per image), with each image's assigner
        per_image = []
        for *inputs, assigner in zip(
            cls_scores_list, bbox_preds_list, batch_gt_instances, batch_img_metas, assigners
        ):
            with assigner_swapped(head, assigner):
                per_image.append(head._get_targets_single(*inputs))
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds = map(
            list, zip(*per_image)
        )
        num_total_pos = sum(inds.numel() for inds in pos_inds)
        num_total_neg = sum(inds.numel() for inds in neg_inds)
        return labels, label_weights, bbox_targets, bbox_weights, num_total_pos, num_total_neg

    head.get_targets = get_targets
    try:
        yield
    finally:
        del head.get_targets


def layer_losses(
    head: nn.Module,
    cls_scores: Tensor,
    bbox_preds: Tensor,
    gt_instances: InstanceList,
    img_metas: List[dict],
    assigners: Optional[Sequence[BaseAssigner]] = None,
) -> Tuple[Tensor, Tensor, Tensor]:
    """mmdet's ``loss_by_feat_single`` for one decoder layer, image b assigned by ``assigners[b]``.

    Args:
        head (nn.Module): A DETR head (mmdet's ``DETRHead`` or a subclass).
        cls_scores (Tensor): Logits of one layer, (bs, N, C).
        bbox_preds (Tensor): Normalised cxcywh boxes of one layer, (bs, N, 4).
        gt_instances (list[InstanceData]): Ground truth per image.
        img_metas (list[dict]): Image metas.
        assigners (Sequence[BaseAssigner], optional): One per image. Defaults
            to None: the head's own assigner for every image.

    Returns:
        tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` (scalars).
    """
    if assigners is None:
        return head.loss_by_feat_single(cls_scores, bbox_preds, gt_instances, img_metas)
    with per_image_assigners(head, assigners):
        return head.loss_by_feat_single(cls_scores, bbox_preds, gt_instances, img_metas)


def head_gt_losses(
    head: nn.Module,
    all_cls_scores: Tensor,
    all_bbox_preds: Tensor,
    gt_instances: InstanceList,
    img_metas: List[dict],
    layer_assigners: Sequence[Optional[Sequence[BaseAssigner]]],
    enc_cls_scores: Optional[Tensor] = None,
    enc_bbox_preds: Optional[Tensor] = None,
) -> Dict[str, Tensor]:
    """mmdet's ``DETRHead.loss_by_feat`` / ``DeformableDETRHead.loss_by_feat``, assigners given.

    Keys are mmdet's, in mmdet's order: ``loss_cls``, ``loss_bbox``,
    ``loss_iou`` for the last layer, ``d{l}.loss_*`` for the others, then
    ``enc_loss_*`` for two-stage encoder proposals (GT labels all 0, as
    mmdet's class-agnostic proposals; always the head's own assigner).

    Args:
        head (nn.Module): A DETR head.
        all_cls_scores (Tensor): Logits, (num_layers, bs, N, C).
        all_bbox_preds (Tensor): Normalised cxcywh boxes, (num_layers, bs, N, 4).
        gt_instances (list[InstanceData]): Ground truth per image.
        img_metas (list[dict]): Image metas.
        layer_assigners (Sequence): Per decoder layer, one assigner per image,
            or None for the head's own.
        enc_cls_scores (Tensor, optional): Encoder proposal logits, (bs, M, C).
            Defaults to None (no proposal losses).
        enc_bbox_preds (Tensor, optional): Encoder proposal boxes, (bs, M, 4).
            Defaults to None.

    Returns:
        dict[str, Tensor]: The losses.
    """
    if len(layer_assigners) != len(all_cls_scores):
        raise ValueError(
            f'{len(layer_assigners)} assigner lists for {len(all_cls_scores)} decoder layers'
        )
    # mmdet's loop over layers and its keys (loss_by_feat has no hook for per-layer assigners)
    per_layer = [
        layer_losses(head, cls, box, gt_instances, img_metas, assigners)
        for cls, box, assigners in zip(all_cls_scores, all_bbox_preds, layer_assigners)
    ]
    losses = dict(zip(LOSS_NAMES, per_layer[-1]))
    for layer, values in enumerate(per_layer[:-1]):
        losses.update({f'd{layer}.{name}': v for name, v in zip(LOSS_NAMES, values)})
    if enc_cls_scores is not None:
        proposal_gts = copy.deepcopy(gt_instances)
        for gts in proposal_gts:
            gts.labels = torch.zeros_like(gts.labels)
        enc = layer_losses(head, enc_cls_scores, enc_bbox_preds, proposal_gts, img_metas)
        losses.update({f'enc_{name}': v for name, v in zip(LOSS_NAMES, enc)})
    return losses
