"""DETRDistill (arXiv 2211.10156), Sec. 3.3: target-aware feature distillation on the neck."""

from typing import Dict, List, Optional, Sequence

import torch
import torch.nn.functional as F
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_overlaps
from torch import Tensor, nn

from ..common import OWN_GROUP, DecoderOutputs, pixel_scale
from ..task_modules.pairing import SolvedPairings
from .base_component import NO_PAIRS, DistillComponent


@MODELS.register_module()
class TargetAwareFeatureKD(DistillComponent):
    """DETRDistill, Sec. 3.3: neck features distilled where the teacher's queries look.

    For each teacher decoder stage l and image, the teacher's ``topk``
    (query, class) predictions i get a quality ``s_i * max IoU(box_i, GT)``
    (``s_i`` alone for an image without GT) and a mask over every neck
    location (x, y) of every level is built from their embeddings ``q_i``::

        m(x, y) = sum_i quality_i * cos(q_i, F_t(x, y))
        m = max(m, 0.01) / max_xy(max(m, 0.01))          (per image and level)
        loss_l = loss_weight * sum_levels mean_{c,x,y} (m * F_t - m * P(F_s))^2

    ``P`` is a 1x1 convolution when the student's channels differ from the
    teacher's, else the identity. Since ``sum_i w_i cos(q_i, f)`` equals
    ``<sum_i w_i q_i/|q_i|, f/|f|>``, the mask costs one dot product per
    location. Levels must pair one to one with equal sizes (same neck layout).

    Args:
        prefix (str): Loss-key prefix; keys ``{prefix}.d{l}.loss_feat``.
            Defaults to ``'detrdistill.feature'``.
        topk (int): Teacher (query, class) predictions per image. Defaults
            to 100.
        stages (Sequence[int], optional): Teacher decoder layers to build
            masks from. Defaults to None (all).
        loss_weight (float): Weight of each stage's loss. Defaults to 1.0.
        min_mask (float): Floor of the mask before normalisation. Defaults to 0.01.
    """

    def __init__(
        self,
        prefix: str = 'detrdistill.feature',
        topk: int = 100,
        stages: Optional[Sequence[int]] = None,
        loss_weight: float = 1.0,
        min_mask: float = 0.01,
    ) -> None:
        super().__init__(prefix)
        self.topk = topk
        self.stages = None if stages is None else list(stages)
        self.loss_weight = loss_weight
        self.min_mask = min_mask
        self.proj: nn.Module = nn.Identity()

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        s_dim, t_dim = student.embed_dims, teacher.embed_dims
        if s_dim != t_dim:
            self.proj = nn.Conv2d(s_dim, t_dim, kernel_size=1)
        super().bind(student, teacher)

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings = NO_PAIRS,
    ) -> Dict[str, Tensor]:
        """Masked feature MSE per teacher stage, keys ``{prefix}.d{l}.loss_feat``."""
        t_feats, s_feats = self._paired_levels(teacher_out.feats, student_out.feats)
        s_feats = [self.proj(f) for f in s_feats]
        t_cls, t_box = teacher_out.group(OWN_GROUP)
        hidden = teacher_out.hidden_states[:, :, teacher_out.slices[OWN_GROUP]]
        img_metas = [s.metainfo for s in batch_data_samples]
        gt_boxes = [s.gt_instances.bboxes for s in batch_data_samples]
        stages = range(teacher_out.num_layers) if self.stages is None else self.stages
        out = {}
        for t_l in stages:
            with torch.no_grad():
                weights = self.query_weights(
                    t_cls[t_l], t_box[t_l], hidden[t_l], gt_boxes, img_metas
                )
                masks = [self.location_mask(weights, f) for f in t_feats]
            loss = sum(
                F.mse_loss(m[:, None] * s.float(), m[:, None] * t.float())
                for m, s, t in zip(masks, s_feats, t_feats)
            )
            out[f'{self.prefix}.d{t_l}.loss_feat'] = self.loss_weight * loss
        return out

    def query_weights(
        self,
        logits: Tensor,
        boxes: Tensor,
        embeds: Tensor,
        gt_boxes: List[Tensor],
        img_metas: List[dict],
    ) -> Tensor:
        """``sum_i quality_i * q_i / |q_i|`` over the top-k predictions, (bs, dim).

        Args:
            logits (Tensor): Teacher class logits of one stage, (bs, N, C).
            boxes (Tensor): Its normalised cxcywh boxes, (bs, N, 4).
            embeds (Tensor): Its query embeddings, (bs, N, dim).
            gt_boxes (list[Tensor]): Pixel xyxy GT boxes per image, (G_b, 4).
            img_metas (list[dict]): Image metas with ``img_shape``.
        """
        scores = logits.float().sigmoid().flatten(1)  # (bs, N * C)
        top_scores, top_idx = scores.topk(min(self.topk, scores.shape[1]), dim=1)
        query_idx = top_idx // logits.shape[-1]  # (bs, k)
        pixel_boxes = bbox_cxcywh_to_xyxy(boxes.float()) * pixel_scale(boxes, img_metas)
        max_iou = torch.stack(
            [
                bbox_overlaps(b, g.to(b)).amax(1) if len(g) else b.new_ones(len(b))
                for b, g in zip(pixel_boxes, gt_boxes)
            ]
        )  # (bs, N)
        quality = top_scores * max_iou.gather(1, query_idx)  # (bs, k)
        unit = F.normalize(embeds.float(), dim=-1)
        chosen = unit.gather(1, query_idx[..., None].expand(-1, -1, unit.shape[-1]))
        return (quality[..., None] * chosen).sum(1)

    def location_mask(self, weights: Tensor, feat: Tensor) -> Tensor:
        """Mask over one level, (bs, H, W), in [min_mask / max, 1]."""
        mask = torch.einsum('bc,bchw->bhw', weights, F.normalize(feat.float(), dim=1))
        mask = mask.clamp(min=self.min_mask)
        return mask / mask.flatten(1).amax(1)[:, None, None]

    def _paired_levels(self, t_feats: Sequence[Tensor], s_feats: Sequence[Tensor]):
        """The student's levels, each with the teacher's level of the same size.

        One to one when the layouts are equal. A teacher with more levels, all
        extra ones finer (e.g. DINO Swin-L 5-scale, strides 4-64, teaching DINO
        R50 4-scale, strides 8-64), pairs its last (coarsest) levels, if their
        sizes are the student's.
        """
        t_sizes = [tuple(f.shape[-2:]) for f in t_feats]
        s_sizes = [tuple(f.shape[-2:]) for f in s_feats]
        n = len(s_sizes)
        if n > len(t_sizes) or t_sizes[len(t_sizes) - n :] != s_sizes:
            raise ValueError(
                'TargetAwareFeatureKD pairs neck levels one to one: teacher levels '
                f'{t_sizes} and student levels {s_sizes} differ. Use the same neck layout '
                '(strides, number of outputs) in both (a teacher may have extra, finer levels '
                'first), or switch the feature component off '
                f'({self.config_keys.switch_off}).'
            )
        return list(t_feats[len(t_feats) - n :]), list(s_feats)

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, topk={self.topk}, loss_weight={self.loss_weight}'
