"""A DETR head's ground-truth loss steps, with the assigner of each layer and image an argument.

mmdet's ``DETRHead`` assigns every image of every decoder layer with
``self.assigner``, deep in its steps::

    loss_by_feat                       one call per decoder layer l
    └── loss_by_feat_single            layer l: targets, then focal / L1 / GIoU
        └── get_targets                one call per image b
            └── _get_targets_single    self.assigner.assign(...)

Here the same steps take the assigners as arguments, and pass them down:
``loss_by_feat(..., layer_assigners)``, ``layer_assigners[l][b]`` assigning
image b in layer l; ``loss_by_feat_single(..., assigners)``;
``get_targets(..., assigners)``; ``_get_targets_single(..., assigner)``.
``None`` at any step is the head's own ``self.assigner``, so without
assigners the losses are mmdet's, bit for bit. The bodies are mmdet 3.3's,
copied: no hook passes an assigner from one step to the next.

``loss_by_feat(..., decoder_loss)`` replaces the per-layer steps altogether
(OD-DETR's matching distillation, where a query has several targets): the
decoder queries' logits and boxes, the GT, the metas and the assigners go to
``decoder_loss``, which returns the losses under mmdet's keys. The heads that
add encoder or denoising losses (Deformable DETR, DINO) keep computing those.
"""

from typing import Callable, Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.models.losses import QualityFocalLoss
from mmdet.models.task_modules import BaseAssigner
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps, bbox_xyxy_to_cxcywh
from mmdet.utils import InstanceList, OptInstanceList, reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor

#: the three losses of each decoder layer, in mmdet's order
LOSS_NAMES = ('loss_cls', 'loss_bbox', 'loss_iou')

#: one assigner per image (None: the head's own)
ImageAssigners = Optional[Sequence[BaseAssigner]]

#: the GT losses of all decoder layers, computed otherwise than by the head's steps:
#: (all_layers_cls_scores, all_layers_bbox_preds, batch_gt_instances, batch_img_metas,
#: layer_assigners) -> mmdet's keys (:func:`decoder_loss_keys`)
DecoderLoss = Callable[
    [Tensor, Tensor, InstanceList, List[dict], Sequence[ImageAssigners]], Dict[str, Tensor]
]


def decoder_loss_keys(per_layer: Sequence[Sequence[Tensor]]) -> Dict[str, Tensor]:
    """Each layer's (loss_cls, loss_bbox, loss_iou) under mmdet's keys, in mmdet's order:
    ``loss_cls``, ``loss_bbox``, ``loss_iou`` of the last layer, then ``d{l}.loss_*``."""
    loss_dict = dict(zip(LOSS_NAMES, per_layer[-1]))
    for layer, values in enumerate(per_layer[:-1]):
        loss_dict.update({f'd{layer}.{name}': v for name, v in zip(LOSS_NAMES, values)})
    return loss_dict


class LayerAssignersMixin:
    """Mixed into a subclass of mmdet's ``DETRHead``: its loss steps take assigners.

    ``loss_by_feat`` here is ``DETRHead``'s (Conditional and DAB-DETR use it
    as it is); Deformable DETR and DINO override it to add their encoder and
    denoising losses, as mmdet's heads do.
    """

    def loss_by_feat_kwargs(self, head_inputs: Dict) -> Dict:
        """``loss_by_feat``'s arguments besides predictions, GT and assigners that the
        detector's ``head_inputs`` give (mmdet's head ``loss`` takes them by name from
        the detector's ``head_inputs_dict``). Conditional and DAB-DETR: none."""
        return {}

    def loss_by_feat(
        self,
        all_layers_cls_scores: Tensor,
        all_layers_bbox_preds: Tensor,
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        batch_gt_instances_ignore: OptInstanceList = None,
        layer_assigners: Optional[Sequence[ImageAssigners]] = None,
        decoder_loss: Optional[DecoderLoss] = None,
    ) -> Dict[str, Tensor]:
        """mmdet's ``DETRHead.loss_by_feat``, decoder layer l assigned by ``layer_assigners[l]``.

        Args:
            all_layers_cls_scores (Tensor): Logits, (num_layers, bs, N, C).
            all_layers_bbox_preds (Tensor): Normalised cxcywh boxes, (num_layers, bs, N, 4).
            batch_gt_instances (list[InstanceData]): Ground truth per image.
            batch_img_metas (list[dict]): Image metas.
            batch_gt_instances_ignore (list, optional): Must be None, as in mmdet.
            layer_assigners (Sequence, optional): Per decoder layer, one assigner per image
                or None (the head's). Defaults to None: the head's everywhere.
            decoder_loss (DecoderLoss, optional): Computes the losses instead of the
                head's steps, given the arguments above (``layer_assigners`` one list per
                layer). Defaults to None: the head's steps.

        Returns:
            dict[str, Tensor]: mmdet's keys in mmdet's order: ``loss_cls``, ``loss_bbox``,
            ``loss_iou`` of the last layer, then ``d{l}.loss_*`` of the others.
        """
        if batch_gt_instances_ignore is not None:
            raise ValueError(f'{type(self).__name__} takes batch_gt_instances_ignore=None only')
        num_layers = len(all_layers_cls_scores)
        if layer_assigners is None:
            layer_assigners = [None] * num_layers
        if len(layer_assigners) != num_layers:
            raise ValueError(
                f'{len(layer_assigners)} assigner lists for {num_layers} decoder layers: '
                'give one per layer'
            )
        if decoder_loss is not None:
            return decoder_loss(
                all_layers_cls_scores,
                all_layers_bbox_preds,
                batch_gt_instances,
                batch_img_metas,
                layer_assigners,
            )
        per_layer = [
            self.loss_by_feat_single(cls, box, batch_gt_instances, batch_img_metas, assigners)
            for cls, box, assigners in zip(
                all_layers_cls_scores, all_layers_bbox_preds, layer_assigners
            )
        ]
        return decoder_loss_keys(per_layer)

    def loss_by_feat_single(
        self,
        cls_scores: Tensor,
        bbox_preds: Tensor,
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        assigners: ImageAssigners = None,
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """mmdet's ``DETRHead.loss_by_feat_single`` (copied), image b assigned by
        ``assigners[b]``.

        Args:
            cls_scores (Tensor): Logits of one layer, (bs, N, C).
            bbox_preds (Tensor): Normalised cxcywh boxes of one layer, (bs, N, 4).
            batch_gt_instances (list[InstanceData]): Ground truth per image.
            batch_img_metas (list[dict]): Image metas.
            assigners (Sequence[BaseAssigner], optional): One per image. Defaults to
                None: the head's own.

        Returns:
            tuple[Tensor]: ``loss_cls``, ``loss_bbox``, ``loss_iou`` (scalars).
        """
        num_imgs = cls_scores.size(0)
        cls_scores_list = [cls_scores[i] for i in range(num_imgs)]
        bbox_preds_list = [bbox_preds[i] for i in range(num_imgs)]
        targets = self.get_targets(
            cls_scores_list, bbox_preds_list, batch_gt_instances, batch_img_metas, assigners
        )
        labels_list, label_weights_list, bbox_targets_list, bbox_weights_list = targets[:4]
        num_total_pos, num_total_neg = targets[4:]
        labels = torch.cat(labels_list, 0)
        label_weights = torch.cat(label_weights_list, 0)
        bbox_targets = torch.cat(bbox_targets_list, 0)
        bbox_weights = torch.cat(bbox_weights_list, 0)

        cls_scores = cls_scores.reshape(-1, self.cls_out_channels)
        cls_avg_factor = num_total_pos * 1.0 + num_total_neg * self.bg_cls_weight
        if self.sync_cls_avg_factor:
            cls_avg_factor = reduce_mean(cls_scores.new_tensor([cls_avg_factor]))
        cls_avg_factor = max(cls_avg_factor, 1)
        if isinstance(self.loss_cls, QualityFocalLoss):
            bg_class_ind = self.num_classes
            pos_inds = ((labels >= 0) & (labels < bg_class_ind)).nonzero().squeeze(1)
            scores = label_weights.new_zeros(labels.shape)
            pos_decode_bbox_targets = bbox_cxcywh_to_xyxy(bbox_targets[pos_inds])
            pos_decode_bbox_pred = bbox_cxcywh_to_xyxy(bbox_preds.reshape(-1, 4)[pos_inds])
            scores[pos_inds] = bbox_overlaps(
                pos_decode_bbox_pred.detach(), pos_decode_bbox_targets, is_aligned=True
            )
            loss_cls = self.loss_cls(
                cls_scores, (labels, scores), label_weights, avg_factor=cls_avg_factor
            )
        else:
            loss_cls = self.loss_cls(cls_scores, labels, label_weights, avg_factor=cls_avg_factor)

        # the average number of GT boxes over processes, as the box losses' normaliser
        num_total_pos = loss_cls.new_tensor([num_total_pos])
        num_total_pos = torch.clamp(reduce_mean(num_total_pos), min=1).item()
        factors = _pixel_factors(bbox_preds, batch_img_metas)
        bbox_preds = bbox_preds.reshape(-1, 4)
        bboxes = bbox_cxcywh_to_xyxy(bbox_preds) * factors
        bboxes_gt = bbox_cxcywh_to_xyxy(bbox_targets) * factors
        loss_iou = self.loss_iou(bboxes, bboxes_gt, bbox_weights, avg_factor=num_total_pos)
        loss_bbox = self.loss_bbox(bbox_preds, bbox_targets, bbox_weights, avg_factor=num_total_pos)
        return loss_cls, loss_bbox, loss_iou

    def get_targets(
        self,
        cls_scores_list: List[Tensor],
        bbox_preds_list: List[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        assigners: ImageAssigners = None,
    ) -> tuple:
        """mmdet's ``DETRHead.get_targets`` (copied), image b assigned by ``assigners[b]``.

        Returns:
            tuple: Per image labels, label weights, box targets, box weights (lists), and
            the numbers of positive and negative queries over the batch (ints).
        """
        if assigners is None:
            assigners = [None] * len(batch_img_metas)
        if len(assigners) != len(batch_img_metas):
            raise ValueError(
                f'{len(assigners)} assigners for {len(batch_img_metas)} images: give one per image'
            )
        per_image = [
            self._get_targets_single(*inputs)
            for inputs in zip(
                cls_scores_list, bbox_preds_list, batch_gt_instances, batch_img_metas, assigners
            )
        ]
        labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds = map(
            list, zip(*per_image)
        )
        num_total_pos = sum(inds.numel() for inds in pos_inds)
        num_total_neg = sum(inds.numel() for inds in neg_inds)
        return labels, label_weights, bbox_targets, bbox_weights, num_total_pos, num_total_neg

    def _get_targets_single(
        self,
        cls_score: Tensor,
        bbox_pred: Tensor,
        gt_instances: InstanceData,
        img_meta: dict,
        assigner: Optional[BaseAssigner] = None,
    ) -> tuple:
        """mmdet's ``DETRHead._get_targets_single`` (copied), assigned by ``assigner``
        (None: the head's own).

        Args:
            cls_score (Tensor): Logits of one image, (N, C).
            bbox_pred (Tensor): Its normalised cxcywh boxes, (N, 4).
            gt_instances (InstanceData): Its ground truth.
            img_meta (dict): Its meta.
            assigner (BaseAssigner, optional): Defaults to None: ``self.assigner``.

        Returns:
            tuple[Tensor]: labels (N,), label weights (N,), box targets (N, 4)
            (normalised cxcywh), box weights (N, 4), positive and negative indices.
        """
        assigner = self.assigner if assigner is None else assigner
        img_h, img_w = img_meta['img_shape']
        factor = bbox_pred.new_tensor([img_w, img_h, img_w, img_h]).unsqueeze(0)
        num_bboxes = bbox_pred.size(0)
        bbox_pred = bbox_cxcywh_to_xyxy(bbox_pred) * factor
        pred_instances = InstanceData(scores=cls_score, bboxes=bbox_pred)
        assign_result = assigner.assign(
            pred_instances=pred_instances, gt_instances=gt_instances, img_meta=img_meta
        )
        gt_bboxes, gt_labels = gt_instances.bboxes, gt_instances.labels
        pos_inds = torch.nonzero(assign_result.gt_inds > 0, as_tuple=False).squeeze(-1).unique()
        neg_inds = torch.nonzero(assign_result.gt_inds == 0, as_tuple=False).squeeze(-1).unique()
        pos_assigned_gt_inds = assign_result.gt_inds[pos_inds] - 1
        pos_gt_bboxes = gt_bboxes[pos_assigned_gt_inds.long(), :]
        labels = gt_bboxes.new_full((num_bboxes,), self.num_classes, dtype=torch.long)
        labels[pos_inds] = gt_labels[pos_assigned_gt_inds]
        label_weights = gt_bboxes.new_ones(num_bboxes)
        bbox_targets = torch.zeros_like(bbox_pred, dtype=gt_bboxes.dtype)
        bbox_weights = torch.zeros_like(bbox_pred, dtype=gt_bboxes.dtype)
        bbox_weights[pos_inds] = 1.0
        bbox_targets[pos_inds] = bbox_xyxy_to_cxcywh(pos_gt_bboxes / factor)
        return labels, label_weights, bbox_targets, bbox_weights, pos_inds, neg_inds


def _pixel_factors(bbox_preds: Tensor, batch_img_metas: List[dict]) -> Tensor:
    """Each query's image ``(w, h, w, h)``, (bs * N, 4), as mmdet's ``loss_by_feat_single``
    builds them (copied, same dtype and device as the boxes)."""
    factors = []
    for img_meta, bbox_pred in zip(batch_img_metas, bbox_preds):
        img_h, img_w = img_meta['img_shape']
        factor = bbox_pred.new_tensor([img_w, img_h, img_w, img_h]).unsqueeze(0)
        factors.append(factor.repeat(bbox_pred.size(0), 1))
    return torch.cat(factors, 0)
