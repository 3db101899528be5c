"""DINO's head whose ground-truth losses take the matching queries' assigners as arguments."""

from typing import Dict, List, Optional, Sequence, Tuple

from mmdet.models.dense_heads import DINOHead
from mmdet.registry import MODELS
from mmdet.utils import InstanceList, OptInstanceList
from torch import Tensor

from .layer_assigners_mixin import LOSS_NAMES, DecoderLoss, ImageAssigners, LayerAssignersMixin


@MODELS.register_module()
class GroupDINOHead(LayerAssignersMixin, DINOHead):
    """``DINOHead`` whose ``loss_by_feat`` takes ``layer_assigners``
    (:class:`LayerAssignersMixin`); the head of :class:`GroupDINO`.

    The queries are mmdet's: the denoising (DN) queries first, then the
    matching queries (``dn_meta['num_denoising_queries']`` = d)::

        loss_by_feat
        ├── matching queries [d:], layer l: assigned by layer_assigners[l]
        │   (or all layers given to decoder_loss, which gets the matching
        │   queries only)
        │     -> loss_cls, loss_bbox, loss_iou, d0.loss_cls, ...
        ├── selected encoder proposals: the head's own assigner, GT labels as
        │   they are (DINO's proposals are class-aware)
        │     -> enc_loss_cls, enc_loss_bbox, enc_loss_iou
        └── DN queries [:d]: mmdet's loss_dn, unchanged
              -> dn_loss_cls, ..., d0.dn_loss_cls, ...

    Without ``dn_meta`` (eval mode: no DN queries) all queries are matching
    queries and there are no DN losses. Same parameters, forward and
    predictions as mmdet's; without assigners, the same losses.
    """

    def loss_by_feat_kwargs(self, head_inputs: Dict) -> Dict:
        """The selected encoder proposals' logits and boxes and ``dn_meta`` (training;
        else None)."""
        return dict(
            enc_cls_scores=head_inputs.get('enc_outputs_class'),
            enc_bbox_preds=head_inputs.get('enc_outputs_coord'),
            dn_meta=head_inputs.get('dn_meta'),
        )

    def loss_by_feat(
        self,
        all_layers_cls_scores: Tensor,
        all_layers_bbox_preds: Tensor,
        enc_cls_scores: Optional[Tensor],
        enc_bbox_preds: Optional[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        dn_meta: Optional[Dict[str, int]],
        batch_gt_instances_ignore: OptInstanceList = None,
        layer_assigners: Optional[Sequence[ImageAssigners]] = None,
        decoder_loss: Optional[DecoderLoss] = None,
    ) -> Dict[str, Tensor]:
        """mmdet's ``DINOHead.loss_by_feat`` (copied: it calls ``DETRHead``'s without
        assigners), matching layer l assigned by ``layer_assigners[l]``.

        Args:
            all_layers_cls_scores (Tensor): Logits of the DN, then matching queries,
                (num_layers, bs, d + N, C).
            all_layers_bbox_preds (Tensor): Their normalised cxcywh boxes, (num_layers,
                bs, d + N, 4).
            enc_cls_scores (Tensor, optional): Logits of the selected encoder proposals,
                (bs, N, C); None in eval mode.
            enc_bbox_preds (Tensor, optional): Their boxes, (bs, N, 4).
            batch_gt_instances (list[InstanceData]): Ground truth per image.
            batch_img_metas (list[dict]): Image metas.
            dn_meta (dict, optional): mmdet's ``dn_meta``; None without DN queries.
            batch_gt_instances_ignore (list, optional): Must be None, as in mmdet.
            layer_assigners (Sequence, optional): Per decoder layer, one assigner per image
                or None. Defaults to None: the head's everywhere.
            decoder_loss (DecoderLoss, optional): Computes the decoder layers' losses
                instead of the head's steps (:meth:`LayerAssignersMixin.loss_by_feat`).
                Defaults to None.

        Returns:
            dict[str, Tensor]: The losses, mmdet's keys in mmdet's order.
        """
        matching_cls, matching_box, dn_cls, dn_box = self._split(
            all_layers_cls_scores, all_layers_bbox_preds, dn_meta
        )
        loss_dict = super().loss_by_feat(
            matching_cls,
            matching_box,
            batch_gt_instances,
            batch_img_metas,
            batch_gt_instances_ignore,
            layer_assigners=layer_assigners,
            decoder_loss=decoder_loss,
        )
        if enc_cls_scores is not None:
            enc = self.loss_by_feat_single(
                enc_cls_scores, enc_bbox_preds, batch_gt_instances, batch_img_metas
            )
            loss_dict.update({f'enc_{name}': v for name, v in zip(LOSS_NAMES, enc)})
        if dn_cls is not None:
            dn = self.loss_dn(
                dn_cls,
                dn_box,
                batch_gt_instances=batch_gt_instances,
                batch_img_metas=batch_img_metas,
                dn_meta=dn_meta,
            )
            per_layer = list(zip(*dn))  # [(loss_cls, loss_bbox, loss_iou) per layer]
            loss_dict.update({f'dn_{name}': v for name, v in zip(LOSS_NAMES, per_layer[-1])})
            for layer, values in enumerate(per_layer[:-1]):
                loss_dict.update({f'd{layer}.dn_{n}': v for n, v in zip(LOSS_NAMES, values)})
        return loss_dict

    def _split(
        self, cls_scores: Tensor, bbox_preds: Tensor, dn_meta: Optional[Dict[str, int]]
    ) -> Tuple[Tensor, Tensor, Optional[Tensor], Optional[Tensor]]:
        """Matching logits and boxes, then DN logits and boxes (None without ``dn_meta``)."""
        if dn_meta is None:
            return cls_scores, bbox_preds, None, None
        return self.split_outputs(cls_scores, bbox_preds, dn_meta)
