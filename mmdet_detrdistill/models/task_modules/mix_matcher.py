"""D3ETR's MixMatcher: adaptive (Hungarian) plus fixed (query-index) matching."""

from typing import List, Optional, Sequence, Tuple

import torch
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.logging import print_log
from mmengine.structures import InstanceData
from torch import Tensor

from ..common import autocast_off, clamp_finite, pixel_scale
from .assignment_backends import check_solver, resolve_solver
from .assignment_solver import check_solver_threads, solve_assignment_stream
from .batched_match_costs import MatchInputs, batched_cost_fns

SOLVER_KEY = 'MixMatcher (model.matcher.solver; DETRDistill: model.logits_kd.matcher.solver)'
TOPK_KEY = (
    'MixMatcher (model.matcher.teacher_topk; DETRDistill: model.logits_kd.matcher.teacher_topk)'
)
DEFAULT_COSTS = (
    dict(type='SoftLabelBCECost', weight=1.0),
    dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
    dict(type='IoUCost', iou_mode='giou', weight=2.0),
)


@TASK_UTILS.register_module()
class MixMatcher:
    """Pair student queries with teacher queries, two ways (D3ETR, Sec. 3).

    * **Adaptive matching**: in every decoder layer, the teacher's predictions
      of that layer are pseudo ground truth for the student's predictions of
      the same layer; a Hungarian matching on ``match_costs`` pairs them.
    * **Fixed matching**: the teacher's queries also run through the student
      decoder as an extra group; query i of that group is paired with teacher
      query i in every layer (no matching needed).

    Costs are computed in fp32 (autocast off); non-finite costs (e.g. from an
    fp16 overflow) are clamped to +-1e8 so they never reach the solver. When
    every cost has a batched form (the default costs do, see
    ``batched_match_costs``), the cost matrices of all images are computed at
    once on the inputs' device; otherwise each cost is called per image.
    :meth:`adaptive_match_layers` matches every decoder layer in one call: the
    Hungarian solves (one per layer and image) run concurrently on host
    threads, each layer's starting while the next layer's costs are computed
    (see ``assignment_solver.solve_assignment_stream``).

    Args:
        match_costs (Sequence[dict]): mmdet match-cost configs; predictions
            carry the student's logits as ``scores`` and targets the teacher's
            sigmoid scores as ``scores`` and argmax as ``labels``, both with
            pixel ``xyxy`` boxes. Defaults to soft-label BCE 1, L1 5, GIoU 2.
        adaptive (bool): Use adaptive matching. Defaults to True.
        fixed (bool): Whether fixed matching is on (:meth:`fixed_match`
            works either way). The matcher only records it: the D3ETR
            distiller reads ``model.matcher.fixed`` to build its fixed-matching
            component (``FixedMatchKD``), which adds the teacher-query group.
            Defaults to True.
        batched_costs (bool): Use the batched form of the costs when they all
            have one; False forces the per-image calls. Defaults to True.
        solver_threads (int, optional): At most this many Hungarian solves at
            once. Defaults to None: this process's share of the node's CPUs
            (usable CPUs // ``LOCAL_WORLD_SIZE``), not ``OMP_NUM_THREADS``,
            which distributed launchers set to 1. The assignments do not
            depend on it.
        solver (str): The Hungarian solver (``assignment_backends``):
            ``'scipy'`` (no extra package), ``'lapx'`` (``lap.lapjvr_batch``
            on the CPU, 2-3x scipy at 900 queries; optional, ``pip install
            lapx``) or ``'torch_linear_assignment'`` (batched on CUDA, costs
            stay on the GPU; CPU costs go to scipy; optional, ``pip install
            torch-linear-assignment``), or ``'auto'``: chosen per device
            among the installed ones (``assignment_backends.resolve_solver``;
            the choice is logged once). Every solver returns an optimal
            assignment, scipy's pairs unless costs tie. Set it with
            ``model.matcher.solver`` (D3ETR) or
            ``model.logits_kd.matcher.solver`` (DETRDistill). Defaults to
            ``'scipy'``.
        teacher_topk (int, optional): Adaptive matching against the teacher's
            ``teacher_topk`` most confident queries of each layer and image
            (confidence: the highest class probability) instead of all Nt:
            Ns x k problems instead of Ns x Nt, K = min(Ns, k) pairs; the
            other teacher queries give no pseudo ground truth, and the
            self-attention loss compares the K x K block of the matched
            queries. An approximation of the paper's matching, for many
            queries (DINO's 900): 110-360x less solver time at k = 100
            (docs/reports/2026-11-30_matching_900.md); its effect on AP is
            in docs/reports/2026-11-30_accuracy_cpu.md. Defaults to None: all
            teacher queries (the paper's matching).
    """

    def __init__(
        self,
        match_costs: Sequence[dict] = DEFAULT_COSTS,
        adaptive: bool = True,
        fixed: bool = True,
        batched_costs: bool = True,
        solver_threads: Optional[int] = None,
        solver: str = 'scipy',
        teacher_topk: Optional[int] = None,
    ) -> None:
        if not (adaptive or fixed):
            raise ValueError('MixMatcher: set at least one of `adaptive` and `fixed` to True')
        self.match_costs = [TASK_UTILS.build(c) for c in match_costs]
        self.adaptive = adaptive
        self.fixed = fixed
        self.batched_fns = batched_cost_fns(self.match_costs) if batched_costs else None
        self.solver_threads = check_solver_threads(solver_threads, 'MixMatcher')
        self.solver = check_solver(solver, SOLVER_KEY)
        if teacher_topk is not None and (
            not isinstance(teacher_topk, int) or isinstance(teacher_topk, bool) or teacher_topk < 1
        ):
            raise ValueError(
                f'{TOPK_KEY}: teacher_topk must be a positive int (match against that many of '
                f"the teacher's most confident queries) or None (all of them); got "
                f'{teacher_topk!r}'
            )
        self.teacher_topk = teacher_topk
        self._logged_auto: set = set()

    @staticmethod
    def layer_pairs(num_student_layers: int, num_teacher_layers: int) -> List[Tuple[int, int]]:
        """Which teacher layer each student layer is distilled from.

        One ``(s, t)`` per student layer s, t in ``[0, Lt)``, non-decreasing in s;
        equal depths pair layer l with layer l, and the last layers are always
        paired. Otherwise student layer s stands at relative depth
        ``(s + 1) / Ls`` and takes the teacher layer there:

        * a shallower student (Ls < Lt) takes the nearest one,
          ``t = round((s + 1) * Lt / Ls) - 1`` (Python's ``round``); no two
          student layers share a teacher layer;
        * a deeper student (Ls > Lt) is cut into Lt consecutive blocks of
          near-equal size, block k distilled from teacher layer k:
          ``t = ceil((s + 1) * Lt / Ls) - 1``, never below 0 (rounding gave
          the early student layers t = -1, i.e. the teacher's *last* layer).
        """
        ls, lt = num_student_layers, num_teacher_layers
        if ls > lt:
            return [(s, -(-(s + 1) * lt // ls) - 1) for s in range(ls)]  # integer ceil
        return [(s, round((s + 1) * lt / ls) - 1) for s in range(ls)]

    def fixed_match(self, batch_size: int, num_queries: int, device: torch.device):
        """Query i of the teacher-query group <-> teacher query i.

        Returns:
            tuple[Tensor, Tensor]: Student and teacher indices, (bs, n) each.
        """
        idx = torch.arange(num_queries, device=device).expand(batch_size, -1)
        return idx, idx

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
        layer = (student_logits, student_boxes, teacher_logits, teacher_boxes)
        s_idx, t_idx = self.adaptive_match_layers(*(x[None] for x in layer), img_metas)
        return s_idx[0], t_idx[0]

    @torch.no_grad()
    def adaptive_match_layers(
        self,
        student_logits: Tensor,
        student_boxes: Tensor,
        teacher_logits: Tensor,
        teacher_boxes: Tensor,
        img_metas: List[dict],
    ) -> Tuple[Tensor, Tensor]:
        """Hungarian-match L decoder layers at once (layer l of the student with
        layer l of the teacher stacks); the same pairs as L :meth:`adaptive_match`
        calls.

        Args:
            student_logits (Tensor): (L, bs, Ns, C) class logits.
            student_boxes (Tensor): (L, bs, Ns, 4) normalised cxcywh boxes.
            teacher_logits (Tensor): (L, bs, Nt, C).
            teacher_boxes (Tensor): (L, bs, Nt, 4).
            img_metas (list[dict]): The bs image metas, with ``img_shape``.

        Returns:
            tuple[Tensor, Tensor]: Matched student and teacher query indices,
            each (L, bs, K), K = min(Ns, Nt), or min(Ns, ``teacher_topk``).
        """
        num_layers, bs, num_teacher = teacher_logits.shape[:3]
        kept = None  # (L, bs, k) teacher queries kept by teacher_topk
        if self.teacher_topk is not None and self.teacher_topk < num_teacher:
            confidence = teacher_logits.float().sigmoid().amax(-1)  # (L, bs, Nt)
            kept = confidence.topk(self.teacher_topk, dim=-1).indices.sort(-1).values
            teacher_logits, teacher_boxes = (
                x.gather(2, kept[..., None].expand(-1, -1, -1, x.shape[-1]))
                for x in (teacher_logits, teacher_boxes)
            )
        inputs = (student_logits, student_boxes, teacher_logits, teacher_boxes)
        self._log_auto_choice(student_logits.device)
        # layer by layer on the device, so that only one layer's temporaries are alive at a
        # time (the GIoU cost's are about ten (bs, Ns, Nt) tensors); a layer's solves start
        # while the next layer's costs are computed (host solvers on a pool)
        layer_costs = (self.batch_cost_matrices(*layer, img_metas) for layer in zip(*inputs))
        rows, cols = solve_assignment_stream(layer_costs, self.solver_threads, self.solver)
        idx = torch.stack([torch.as_tensor(rows), torch.as_tensor(cols)]).to(student_logits.device)
        s_idx, t_idx = idx.unflatten(1, (num_layers, bs))  # (L, bs, K) each
        if kept is not None:  # columns of the reduced problem -> teacher query indices
            t_idx = kept.gather(2, t_idx)  # kept is sorted: still sorted by teacher index
        return s_idx, t_idx

    def _log_auto_choice(self, device: torch.device) -> None:
        """Log once per device type which solver ``solver='auto'`` resolved to for costs
        on ``device``."""
        if self.solver != 'auto' or device.type in self._logged_auto:
            return
        self._logged_auto.add(device.type)
        chosen = resolve_solver('auto', device.type == 'cuda')
        print_log(
            f"MixMatcher: solver='auto' solves {device.type} costs with {chosen!r}", 'current'
        )

    def batch_cost_matrices(
        self,
        student_logits: Tensor,
        student_boxes: Tensor,
        teacher_logits: Tensor,
        teacher_boxes: Tensor,
        img_metas: List[dict],
    ) -> Tensor:
        """The finite fp32 cost matrix of every image, (bs, Ns, Nt), on the inputs' device."""
        with autocast_off(student_logits.device):
            preds, targets, factors = match_inputs(
                student_logits, student_boxes, teacher_logits, teacher_boxes, img_metas
            )
            if self.batched_fns is None:
                return self._per_image_costs(preds, targets, img_metas)
            return self._batched_costs(preds, targets, factors)

    def _batched_costs(self, preds: MatchInputs, targets: MatchInputs, factors: Tensor) -> Tensor:
        """The batched forms of ``match_costs``, all images at once."""
        cost = sum(
            fn(c, preds, targets, factors).float()
            for c, fn in zip(self.match_costs, self.batched_fns)
        )
        return clamp_finite(cost)

    def _per_image_costs(
        self, preds: MatchInputs, targets: MatchInputs, img_metas: List[dict]
    ) -> Tensor:
        """``match_costs`` called image by image on mmdet ``InstanceData``."""
        return torch.stack(
            [
                self.cost_matrix(*_image_instances(preds, targets, b), img_metas[b])
                for b in range(len(img_metas))
            ]
        )

    def cost_matrix(self, preds: InstanceData, targets: InstanceData, img_meta: dict) -> Tensor:
        """Weighted sum of ``match_costs`` for one image, (num_preds, num_targets), finite."""
        with autocast_off(preds.scores.device):
            cost = sum(
                c(pred_instances=preds, gt_instances=targets, img_meta=img_meta).float()
                for c in self.match_costs
            )
        return clamp_finite(cost)

    def __repr__(self) -> str:
        return (
            f'{self.__class__.__name__}(adaptive={self.adaptive}, fixed={self.fixed}, '
            f'match_costs={[c.__class__.__name__ for c in self.match_costs]}, '
            f'batched_costs={self.batched_fns is not None}, '
            f'solver_threads={self.solver_threads}, solver={self.solver!r}, '
            f'teacher_topk={self.teacher_topk})'
        )


def match_inputs(
    student_logits: Tensor,
    student_boxes: Tensor,
    teacher_logits: Tensor,
    teacher_boxes: Tensor,
    img_metas: List[dict],
) -> Tuple[MatchInputs, MatchInputs, Tensor]:
    """fp32 predictions (student logits) and targets (teacher sigmoid scores and argmax
    labels) of a batch with pixel ``xyxy`` boxes, and each image's ``[w, h, w, h]``."""
    factors = pixel_scale(student_boxes, img_metas)
    preds = MatchInputs(
        scores=student_logits.float(),
        bboxes=bbox_cxcywh_to_xyxy(student_boxes.float()) * factors,
    )
    t_scores = teacher_logits.float().sigmoid()
    targets = MatchInputs(
        scores=t_scores,
        bboxes=bbox_cxcywh_to_xyxy(teacher_boxes.float()) * factors,
        labels=t_scores.argmax(-1),
    )
    return preds, targets, factors


def _image_instances(
    preds: MatchInputs, targets: MatchInputs, b: int
) -> Tuple[InstanceData, InstanceData]:
    """Image ``b`` of batched inputs as mmdet match-cost ``InstanceData``."""
    return (
        InstanceData(scores=preds.scores[b], bboxes=preds.bboxes[b]),
        InstanceData(scores=targets.scores[b], labels=targets.labels[b], bboxes=targets.bboxes[b]),
    )
