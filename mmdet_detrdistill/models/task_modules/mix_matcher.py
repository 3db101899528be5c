"""D3ETR's MixMatcher: adaptive (Hungarian) plus fixed (query-index) matching."""

from typing import List, Sequence, Tuple

import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment
from torch import Tensor

DEFAULT_COSTS = (
    dict(type='SoftLabelBCECost', weight=1.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0),
)
_FINITE_COST_LIMIT = 1e8


@TASK_UTILS.register_module()
class MixMatcher:
    """Pair student queries with teacher queries, two ways (D3ETR, Sec. 3).

    * **Adaptive matching**: in every decoder layer, the teacher's predictions
      of that layer are pseudo ground truth for the student's predictions of
      the same layer; a Hungarian matching on ``match_costs`` pairs them.
    * **Fixed matching**: the teacher's queries also run through the student
      decoder as an extra group; query i of that group is paired with teacher
      query i in every layer (no matching needed).

    Costs are computed in fp32; non-finite costs (e.g. from an fp16 overflow)
    are clamped to +-1e8 so they never reach the solver.

    Args:
        match_costs (Sequence[dict]): mmdet match-cost configs; predictions
            carry the student's logits as ``scores`` and targets the teacher's
            sigmoid scores as ``scores`` and argmax as ``labels``, both with
            pixel ``xyxy`` boxes. Defaults to soft-label BCE 1, L1 5, GIoU 2.
        adaptive (bool): Use adaptive matching. Defaults to True.
        fixed (bool): Use fixed matching (adds the teacher-query group).
            Defaults to True.
    """

    def __init__(
        self,
        match_costs: Sequence[dict] = DEFAULT_COSTS,
        adaptive: bool = True,
        fixed: bool = True,
    ) -> None:
        if not (adaptive or fixed):
            raise ValueError('MixMatcher: set at least one of `adaptive` and `fixed` to True')
        self.match_costs = [TASK_UTILS.build(c) for c in match_costs]
        self.adaptive = adaptive
        self.fixed = fixed

    @staticmethod
    def layer_pairs(num_student_layers: int, num_teacher_layers: int) -> List[Tuple[int, int]]:
        """Which teacher layer each student layer is distilled from.

        Equal depths pair layer l with layer l; otherwise layers are spread
        evenly and the last layers are always paired: student layer l takes
        teacher layer ``round((l + 1) * Lt / Ls) - 1``.
        """
        return [
            (s, round((s + 1) * num_teacher_layers / num_student_layers) - 1)
            for s in range(num_student_layers)
        ]

    def fixed_match(self, batch_size: int, num_queries: int, device: torch.device):
        """Query i of the teacher-query group <-> teacher query i.

        Returns:
            tuple[Tensor, Tensor]: Student and teacher indices, (bs, n) each.
        """
        idx = torch.arange(num_queries, device=device).expand(batch_size, -1)
        return idx, idx

    @torch.no_grad()
    def adaptive_match(
        self,
        student_logits: Tensor,
        student_boxes: Tensor,
        teacher_logits: Tensor,
        teacher_boxes: Tensor,
        img_metas: List[dict],
    ) -> Tuple[Tensor, Tensor]:
        """Hungarian-match one decoder layer, image by image.

        Args:
            student_logits (Tensor): (bs, Ns, C) class logits.
            student_boxes (Tensor): (bs, Ns, 4) normalised cxcywh boxes.
            teacher_logits (Tensor): (bs, Nt, C).
            teacher_boxes (Tensor): (bs, Nt, 4).
            img_metas (list[dict]): Image metas with ``img_shape``.

        Returns:
            tuple[Tensor, Tensor]: Matched student and teacher query indices,
            each (bs, K) with K = min(Ns, Nt), sorted by teacher index when
            Ns >= Nt.
        """
        pairs = [
            self._match_image(
                student_logits[b],
                student_boxes[b],
                teacher_logits[b],
                teacher_boxes[b],
                img_metas[b],
            )
            for b in range(len(img_metas))
        ]
        return torch.stack([p[0] for p in pairs]), torch.stack([p[1] for p in pairs])

    def cost_matrix(self, preds: InstanceData, targets: InstanceData, img_meta: dict) -> Tensor:
        """Weighted sum of ``match_costs``, (num_preds, num_targets), finite."""
        cost = sum(
            c(pred_instances=preds, gt_instances=targets, img_meta=img_meta).float()
            for c in self.match_costs
        )
        lim = _FINITE_COST_LIMIT
        return torch.nan_to_num(cost, nan=lim, posinf=lim, neginf=-lim).clamp(-lim, lim)

    def _match_image(
        self, s_logits: Tensor, s_boxes: Tensor, t_logits: Tensor, t_boxes: Tensor, img_meta: dict
    ) -> Tuple[Tensor, Tensor]:
        h, w = img_meta['img_shape']
        scale = s_boxes.new_tensor([w, h, w, h]).float()
        preds = InstanceData(
            scores=s_logits.float(), bboxes=bbox_cxcywh_to_xyxy(s_boxes.float()) * scale
        )
        t_scores = t_logits.float().sigmoid()
        targets = InstanceData(
            scores=t_scores,
            labels=t_scores.argmax(-1),
            bboxes=bbox_cxcywh_to_xyxy(t_boxes.float()) * scale,
        )
        cost = self.cost_matrix(preds, targets, img_meta)  # (Ns, Nt)
        rows, cols = linear_sum_assignment(cost.cpu().numpy())
        order = cols.argsort() if len(cols) else cols  # teacher order
        device = s_logits.device
        return (
            torch.as_tensor(rows[order], device=device, dtype=torch.long),
            torch.as_tensor(cols[order], device=device, dtype=torch.long),
        )

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(adaptive={self.adaptive}, fixed={self.fixed}, '
            f'match_costs={[c.__class__.__name__ for c in self.match_costs]})'
        )
