"""One decoder layer's GT losses when a query may have several targets (OD-DETR, Sec. 3)."""

from typing import List, Sequence, Tuple

import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps, bbox_xyxy_to_cxcywh
from mmdet.utils import InstanceList, reduce_mean
from torch import Tensor, nn

from ..common import pixel_scale
from ..task_modules.twin_targets import QueryTargets


def query_target_losses(
    cls_scores: Tensor,
    bbox_preds: Tensor,
    batch_gt_instances: InstanceList,
    batch_img_metas: List[dict],
    targets: Sequence[QueryTargets],
    losses: Tuple[nn.Module, nn.Module, nn.Module],
    sync_cls_avg_factor: bool = False,
) -> Tuple[Tensor, Tensor, Tensor]:
    """Class, L1 and GIoU losses of one decoder layer over (query, GT) target pairs.

    mmdet's ``DETRHead.loss_by_feat_single`` with target pairs instead of one
    assignment. Over the P pairs of the batch, pair p (query q, GT g, weight
    w_p), with A = sum_p w_p averaged over processes (mmdet's number of
    positives; at least 1)::

        loss_cls  = MultiTargetQFL(logits, pairs, quality_p = w_p IoU(box_q, gt_g)) / A
        loss_bbox = sum_p w_p |box_q - gt_g|_1 (normalised cxcywh) * w_L1 / A
        loss_iou  = sum_p w_p (1 - GIoU(box_q, gt_g)) (pixels) * w_GIoU / A

    (A for the class loss averaged over processes only with
    ``sync_cls_avg_factor``, as in mmdet). With one pair per matched query this
    is mmdet's loss with ``QualityFocalLoss`` as the class loss.

    Args:
        cls_scores (Tensor): Logits of one layer, (bs, N, C).
        bbox_preds (Tensor): Normalised cxcywh boxes of one layer, (bs, N, 4).
        batch_gt_instances (list[InstanceData]): GT per image (pixel xyxy boxes, labels).
        batch_img_metas (list[dict]): Image metas with ``img_shape``.
        targets (Sequence[QueryTargets]): The pairs of each image.
        losses (tuple[nn.Module]): The class loss (:class:`MultiTargetQualityFocalLoss`),
            the L1 and the GIoU losses (mmdet's, the head's).
        sync_cls_avg_factor (bool): Average the class normaliser over processes.
            Defaults to False.

    Returns:
        tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` (scalars).
    """
    loss_cls, loss_bbox, loss_iou = losses
    num_queries, num_classes = cls_scores.shape[1:]
    queries = torch.cat([t.queries + b * num_queries for b, t in enumerate(targets)])
    image = torch.cat([torch.full_like(t.queries, b) for b, t in enumerate(targets)])
    weights = torch.cat([t.weights for t in targets]).to(bbox_preds.dtype)
    gt_boxes, labels = _pair_gts(batch_gt_instances, batch_img_metas, targets)
    boxes = bbox_preds.reshape(-1, 4)[queries]  # (P, 4) normalised cxcywh
    quality = bbox_overlaps(
        bbox_cxcywh_to_xyxy(boxes).detach(), bbox_cxcywh_to_xyxy(gt_boxes), is_aligned=True
    )
    num_pairs = weights.sum().reshape(1)
    cls_avg_factor = reduce_mean(num_pairs) if sync_cls_avg_factor else num_pairs
    cls_avg_factor = max(cls_avg_factor.item(), 1)
    loss_c = loss_cls(
        cls_scores.reshape(-1, num_classes), queries, labels, weights * quality, cls_avg_factor
    )
    avg_factor = torch.clamp(reduce_mean(num_pairs), min=1).item()
    scale = pixel_scale(bbox_preds, batch_img_metas)[image, 0].to(boxes.dtype)  # (P, 4)
    pixel_boxes = bbox_cxcywh_to_xyxy(boxes) * scale
    pixel_gts = bbox_cxcywh_to_xyxy(gt_boxes) * scale
    loss_i = loss_iou(pixel_boxes, pixel_gts, weights, avg_factor=avg_factor)
    loss_b = loss_bbox(boxes, gt_boxes, weights[:, None].expand(-1, 4), avg_factor=avg_factor)
    return loss_c, loss_b, loss_i


def _pair_gts(
    batch_gt_instances: InstanceList, batch_img_metas: List[dict], targets: Sequence[QueryTargets]
) -> Tuple[Tensor, Tensor]:
    """Each pair's GT box (normalised cxcywh, (P, 4)) and label ((P,) long)."""
    boxes, labels = [], []
    for gt, meta, t in zip(batch_gt_instances, batch_img_metas, targets):
        scale = pixel_scale(gt.bboxes, [meta])[0].to(gt.bboxes.dtype)
        boxes.append(bbox_xyxy_to_cxcywh(gt.bboxes[t.gts] / scale))
        labels.append(gt.labels[t.gts])
    return torch.cat(boxes), torch.cat(labels)
