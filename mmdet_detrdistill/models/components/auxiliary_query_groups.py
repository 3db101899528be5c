"""OD-DETR (arXiv 2406.05791), Sec. 3.4: auxiliary query groups.

Per GT, the teacher's two least-cost queries of each decoding stage join the student as a group.
"""

from typing import Dict, List, Optional, Sequence, Tuple

import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmdet.utils import reduce_mean
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..common import (
    OWN_GROUP,
    DecoderOutputs,
    QueryGroup,
    autocast_off,
    pixel_scale,
    pred_instances,
)
from ..task_modules.pairing import SolvedPairings
from .base_component import NO_PAIRS, DistillComponent
from .fixed_match_kd import check_same_query_format


@MODELS.register_module()
class AuxiliaryQueryGroups(DistillComponent):
    """OD-DETR, Sec. 3.4: extra groups of teacher queries, one per decoding stage.

    For teacher decoder stage s and GT box j, the ``num_per_gt`` teacher
    queries with the least match cost to j (the teacher head's assigner
    costs on its stage-s predictions) are taken, as the decoder left them
    after stage s (:meth:`QueryGroupMixin.stage_query_group`). Stage s gives
    the group ``'aux{s}'``; its slot ``j * num_per_gt + r`` is trained, in
    every student decoder layer, to predict GT j with the student head's
    classification, L1 and GIoU losses (summed over the real slots and
    divided by their number averaged over processes, as mmdet's heads divide
    by their positives: see :func:`slot_avg_factor`). Images
    with fewer GT boxes than the batch's most are padded with slots that no
    query can see (``QueryGroup.valid``); each slot's GT travels with the
    group (``QueryGroup.targets``, -1 for padding)::

        aux{s} of an image with 2 GT boxes, num_per_gt = 2, batch max 3 GT:
        slot     0     1     2     3     4     5
        query   q_0a  q_0b  q_1a  q_1b  pad   pad
        target  GT 0  GT 0  GT 1  GT 1   -     -

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'oddetr.aux'``.
        num_per_gt (int): Teacher queries per GT and stage. Defaults to 2.
        stages (Sequence[int], optional): Teacher stages. Defaults to None (all).
        loss_weight (float): Multiplies the losses. Defaults to 1.0.
    """

    def __init__(
        self,
        prefix: str = 'oddetr.aux',
        num_per_gt: int = 2,
        stages: Optional[Sequence[int]] = None,
        loss_weight: float = 1.0,
    ) -> None:
        super().__init__(prefix)
        self.num_per_gt = num_per_gt
        self.stages = None if stages is None else list(stages)
        self.loss_weight = loss_weight

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        check_same_query_format(student, teacher, self)
        super().bind(student, teacher)
        self.match_costs = teacher.bbox_head.assigner.match_costs

    @torch.no_grad()
    def least_cost_queries(
        self, logits: Tensor, boxes: Tensor, gt_instances: List[InstanceData], img_metas: List[dict]
    ) -> Tuple[Tensor, Tensor]:
        """Per image and GT, the ``num_per_gt`` least-cost teacher queries.

        Args:
            logits (Tensor): Teacher class logits of one stage, (bs, N, C).
            boxes (Tensor): Its normalised cxcywh boxes, (bs, N, 4).

        Returns:
            tuple[Tensor, Tensor]: Query indices (bs, G_max * k) in slot order
            (GT-major) and which slots are real (bs, G_max * k) bool.
        """
        k = min(self.num_per_gt, logits.shape[1])
        g_max = max(len(g) for g in gt_instances)
        idx = logits.new_zeros(len(gt_instances), g_max * k, dtype=torch.long)
        valid = torch.zeros_like(idx, dtype=torch.bool)
        preds = pred_instances(logits.float(), boxes.float(), img_metas)
        for b, (pred, gt, meta) in enumerate(zip(preds, gt_instances, img_metas)):
            if len(gt) == 0:
                continue
            with autocast_off(logits):
                cost = sum(
                    c(pred_instances=pred, gt_instances=gt, img_meta=meta) for c in self.match_costs
                )
            least = cost.float().topk(k, dim=0, largest=False).indices  # (k, G) ascending
            idx[b, : len(gt) * k] = least.t().flatten()
            valid[b, : len(gt) * k] = True
        return idx, valid

    def query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        """One group per teacher stage, with its slots' GT (none when the batch has no
        GT box)."""
        gts = [s.gt_instances for s in batch_data_samples]
        if not _has_gt(gts):
            return []
        metas = [s.metainfo for s in batch_data_samples]
        t_cls, t_box = teacher_out.group(OWN_GROUP)
        hidden = teacher_out.hidden_states[:, :, teacher_out.slices[OWN_GROUP]]
        groups = []
        for s, name in zip(self._stages(teacher_out), self.group_names(teacher_out)):
            idx, valid = self.least_cost_queries(t_cls[s], t_box[s], gts, metas)
            group = self.teacher.stage_query_group(
                name, teacher_out.own_queries, hidden[s], t_box[s], idx
            )
            targets = self._slot_targets(gts, valid.shape[1])
            groups.append(
                QueryGroup(name, group.query, group.query_pos, group.reference, valid, targets)
            )
        return groups

    def _stages(self, teacher_out: DecoderOutputs) -> List[int]:
        """The teacher stages that give groups."""
        return list(range(teacher_out.num_layers)) if self.stages is None else self.stages

    def group_names(self, teacher_out: DecoderOutputs) -> List[str]:
        """The names of the groups, ``aux{stage}``, in stage order."""
        return [f'aux{s}' for s in self._stages(teacher_out)]

    def _slot_targets(self, gts: List[InstanceData], num_slots: int) -> Tensor:
        """GT index of each slot, (bs, num_slots), -1 for padding."""
        k = min(self.num_per_gt, self.teacher.num_queries)
        out = torch.full((len(gts), num_slots), -1, dtype=torch.long, device=gts[0].labels.device)
        for b, gt in enumerate(gts):
            out[b, : len(gt) * k] = torch.arange(len(gt), device=out.device).repeat_interleave(k)
        return out

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings = NO_PAIRS,
    ) -> Dict[str, Tensor]:
        """Head losses of the auxiliary slots, keys ``{prefix}.d{l}.{loss}``.

        Each slot's GT is its group's ``targets`` (the groups as :meth:`query_groups`
        gave them, read from ``student_out.groups``). Normalised by the real slots of
        all processes (:func:`slot_avg_factor`).
        """
        keys = ('loss_cls', 'loss_bbox', 'loss_iou')
        if not _has_gt([s.gt_instances for s in batch_data_samples]):  # no group ran
            zero = student_out.cls_scores.sum() * 0  # zero, still on the graph
            slot_avg_factor(zero.detach())  # the all-reduce every rank makes
            return {
                f'{self.prefix}.d{i}.{k}': zero for i in range(student_out.num_layers) for k in keys
            }
        names = self.group_names(teacher_out)
        cls = torch.cat([student_out.group(n)[0] for n in names], dim=2)
        box = torch.cat([student_out.group(n)[1] for n in names], dim=2)
        groups = [student_out.groups[n] for n in names]  # as query_groups gave them
        gt_of_slot = torch.cat([g.targets for g in groups], dim=1)
        valid = torch.cat([g.valid for g in groups], dim=1)
        img_metas = [s.metainfo for s in batch_data_samples]
        labels, target_boxes = self._gather_targets(batch_data_samples, gt_of_slot, valid)
        avg_factor = slot_avg_factor(valid.float())  # the same for every layer
        out = {}
        for layer in range(student_out.num_layers):
            with autocast_off(cls):
                values = self._slot_losses(
                    cls[layer], box[layer], labels, target_boxes, valid, avg_factor, img_metas
                )
            out.update(
                {f'{self.prefix}.d{layer}.{k}': self.loss_weight * v for k, v in zip(keys, values)}
            )
        return out

    def _gather_targets(
        self, batch_data_samples: SampleList, gt_of_slot: Tensor, valid: Tensor
    ) -> Tuple[Tensor, Tensor]:
        """Labels (bs, n), background for padding, and pixel xyxy boxes (bs, n, 4), zero
        for padding (gathered without boolean indexing: no host sync)."""
        num_classes = self.student.bbox_head.num_classes
        labels = torch.full_like(gt_of_slot, num_classes)
        boxes = gt_of_slot.new_zeros(*gt_of_slot.shape, 4, dtype=torch.float)
        for b, sample in enumerate(batch_data_samples):
            gt = sample.gt_instances
            if len(gt) == 0:
                continue
            idx = gt_of_slot[b].clamp(min=0)
            labels[b] = torch.where(valid[b], gt.labels[idx], labels[b])
            boxes[b] = gt.bboxes[idx].float() * valid[b, :, None]
        return labels, boxes

    def _slot_losses(
        self,
        cls: Tensor,
        box: Tensor,
        labels: Tensor,
        target_boxes: Tensor,
        valid: Tensor,
        num_valid: Tensor,
        img_metas: List[dict],
    ) -> Tuple[Tensor, Tensor, Tensor]:
        """Focal/L1/GIoU of the head on the slots of one layer (cls (bs, n, C), box (bs, n, 4)),
        each summed over the real slots and divided by ``num_valid``."""
        head = self.student.bbox_head
        weights = valid.float().flatten()
        scale = pixel_scale(box, img_metas)
        loss_cls = head.loss_cls(cls.flatten(0, 1), labels.flatten(), weights, avg_factor=num_valid)
        target_norm = bbox_xyxy_to_cxcywh(target_boxes / scale).flatten(0, 1)
        box_weights = weights[:, None].expand(-1, 4)
        loss_bbox = head.loss_bbox(
            box.flatten(0, 1).float(), target_norm, box_weights, avg_factor=num_valid
        )
        loss_iou = head.loss_iou(
            (bbox_cxcywh_to_xyxy(box.float()) * scale).flatten(0, 1),
            target_boxes.flatten(0, 1),
            weights,
            avg_factor=num_valid,
        )
        return loss_cls, loss_bbox, loss_iou

    def extra_repr(self) -> str:
        return f'{super().extra_repr()}, num_per_gt={self.num_per_gt}, stages={self.stages}'


def _has_gt(gts: List[InstanceData]) -> bool:
    """Whether any image of the batch has a GT box (else there are no auxiliary groups)."""
    return max(len(g) for g in gts) > 0


def slot_avg_factor(weights: Tensor) -> Tensor:
    """The loss normaliser of the slots ``weights`` (1 = real, 0 = padding), as mmdet's heads do.

    The number of real slots averaged over processes, at least 1 (mmdet's
    ``DETRHead.loss_by_feat_single``: ``clamp(reduce_mean(num_total_pos), min=1)``).
    Every rank divides its sum by the same count, so after DDP averages the
    gradients each slot of the global batch weighs the same, wherever it is.
    It stays a tensor: no host sync. Every rank must call it equally often.
    """
    return reduce_mean(weights.sum()).clamp(min=1)
