"""DINO's ground-truth losses with the matching part's assigners given explicitly.

mmdet's ``DINOHead.loss_by_feat`` splits the outputs into the denoising (DN)
and matching parts, then adds three kinds of losses; here the same, with the
matching part through :func:`head_gt_losses` (assigner per layer and image)::

    dino_head_gt_losses
    ├── matching queries, layer 0 .. L-1: head_gt_losses(..., layer_assigners)
    │     -> loss_cls, loss_bbox, loss_iou, d0.loss_cls, ...
    ├── encoder proposals (the selected top-k): head.loss_by_feat_single, the
    │   head's own assigner, GT labels as they are (DINO's proposals are
    │   class-aware, unlike two-stage Deformable DETR's)
    │     -> enc_loss_cls, enc_loss_bbox, enc_loss_iou
    └── DN queries (train mode): head.loss_dn, mmdet's, unchanged
          -> dn_loss_cls, dn_loss_bbox, dn_loss_iou, d0.dn_loss_cls, ...

Keys and their order are mmdet's.
"""

from typing import Dict, List, Optional, Sequence, Tuple

from mmdet.models.task_modules import BaseAssigner
from mmdet.utils import InstanceList
from torch import Tensor, nn

from .head_losses import LOSS_NAMES, head_gt_losses, layer_losses


def dino_head_gt_losses(
    head: nn.Module,
    all_cls_scores: Tensor,
    all_bbox_preds: Tensor,
    gt_instances: InstanceList,
    img_metas: List[dict],
    layer_assigners: Sequence[Optional[Sequence[BaseAssigner]]],
    enc_cls_scores: Optional[Tensor] = None,
    enc_bbox_preds: Optional[Tensor] = None,
    denoising: Optional[Tuple[Tensor, Tensor, Dict]] = None,
) -> Dict[str, Tensor]:
    """mmdet's ``DINOHead.loss_by_feat``, the matching part's assigners given.

    Args:
        head (nn.Module): A ``DINOHead``.
        all_cls_scores (Tensor): Logits of the matching queries, (L, bs, N, C).
        all_bbox_preds (Tensor): Their boxes, normalised cxcywh, (L, bs, N, 4).
        gt_instances (list[InstanceData]): Ground truth per image.
        img_metas (list[dict]): Image metas.
        layer_assigners (Sequence): Per decoder layer, one assigner per image,
            or None for the head's own.
        enc_cls_scores (Tensor, optional): Logits of the selected encoder
            proposals, (bs, k, C). Defaults to None (no proposal losses).
        enc_bbox_preds (Tensor, optional): Their boxes, (bs, k, 4).
        denoising (tuple, optional): The DN queries' logits (L, bs, d, C),
            boxes (L, bs, d, 4) and mmdet's ``dn_meta``
            (:meth:`GroupDINO.denoising_outputs`). Defaults to None (no DN
            losses: eval mode).

    Returns:
        dict[str, Tensor]: The losses, with mmdet's keys.
    """
    losses = head_gt_losses(
        head, all_cls_scores, all_bbox_preds, gt_instances, img_metas, layer_assigners
    )
    if enc_cls_scores is not None:
        enc = layer_losses(head, enc_cls_scores, enc_bbox_preds, gt_instances, img_metas)
        losses.update({f'enc_{name}': v for name, v in zip(LOSS_NAMES, enc)})
    if denoising is not None:
        dn_cls, dn_box, dn_meta = denoising
        per_layer = list(
            zip(
                *head.loss_dn(
                    dn_cls,
                    dn_box,
                    batch_gt_instances=gt_instances,
                    batch_img_metas=img_metas,
                    dn_meta=dn_meta,
                )
            )
        )  # [(loss_cls, loss_bbox, loss_iou) per layer]
        losses.update({f'dn_{name}': v for name, v in zip(LOSS_NAMES, per_layer[-1])})
        for layer, values in enumerate(per_layer[:-1]):
            losses.update({f'd{layer}.dn_{name}': v for name, v in zip(LOSS_NAMES, values)})
    return losses
