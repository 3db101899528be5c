"""MixMatcher's batched cost path gives the per-image mmdet-cost result."""

import numpy as np
import pytest
import torch
from mmdet.models.task_modules.assigners.match_cost import IoUCost
from mmdet.registry import TASK_UTILS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from scipy.optimize import linear_sum_assignment

from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.models.task_modules import assignment_solver as solver_module
from mmdet_detrdistill.models.task_modules.mix_matcher import DEFAULT_COSTS

# (bs, Ns, Nt, image shapes): bs > 1, Ns != Nt both ways, images of different sizes
CASES = [
    (1, 10, 10, [(64, 80)]),
    (3, 17, 9, [(64, 80), (96, 128), (48, 112)]),
    (2, 8, 13, [(320, 256), (200, 304)]),
    (4, 30, 30, [(128, 128), (96, 160), (160, 96), (64, 64)]),
]
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


class IoUCostSubclass(IoUCost):
    """A user subclass: may change the formula, so it has no batched form."""


TASK_UTILS.register_module(module=IoUCostSubclass, force=True)


def _layer(bs, ns, nt, shapes, num_classes=5, dtype=torch.float32, seed=0):
    """Random student and teacher predictions of one decoder layer, and image metas."""
    g = torch.Generator().manual_seed(seed)

    def preds(n):
        logits = torch.randn(bs, n, num_classes, generator=g) * 3
        cxcy = torch.rand(bs, n, 2, generator=g) * 0.6 + 0.2
        wh = torch.rand(bs, n, 2, generator=g) * 0.3 + 0.05
        return logits.to(dtype), torch.cat([cxcy, wh], -1).to(dtype)

    metas = [dict(img_shape=s) for s in shapes]
    return (*preds(ns), *preds(nt), metas)


def _reference_costs(s_logits, s_boxes, t_logits, t_boxes, metas, match_costs=DEFAULT_COSTS):
    """Per image, mmdet's match-cost classes on ``InstanceData`` (the generic path)."""
    costs = [TASK_UTILS.build(c) for c in match_costs]
    out = []
    for b, meta in enumerate(metas):
        h, w = meta['img_shape']
        scale = torch.tensor([w, h, w, h], dtype=torch.float32)
        preds = InstanceData(
            scores=s_logits[b].float(), bboxes=bbox_cxcywh_to_xyxy(s_boxes[b].float()) * scale
        )
        t_scores = t_logits[b].float().sigmoid()
        targets = InstanceData(
            scores=t_scores,
            labels=t_scores.argmax(-1),
            bboxes=bbox_cxcywh_to_xyxy(t_boxes[b].float()) * scale,
        )
        out.append(sum(c(pred_instances=preds, gt_instances=targets, img_meta=meta) for c in costs))
    return torch.stack(out)


def _reference_match(costs):
    """scipy's solver image by image, pairs sorted by teacher index."""
    rows, cols = [], []
    for cost in costs:
        r, c = linear_sum_assignment(cost.numpy())
        rows.append(torch.as_tensor(r[c.argsort()]))
        cols.append(torch.as_tensor(c[c.argsort()]))
    return torch.stack(rows), torch.stack(cols)


def test_default_costs_take_the_batched_path():
    assert MixMatcher().batched_fns is not None
    assert MixMatcher(batched_costs=False).batched_fns is None


def test_unknown_or_subclassed_costs_take_the_generic_path():
    focal = (dict(type='FocalLossCost', weight=2.0), *DEFAULT_COSTS[1:])
    subclass = (*DEFAULT_COSTS[:2], dict(type='IoUCostSubclass', iou_mode='giou', weight=2.0))
    for costs in (focal, subclass):
        matcher = MixMatcher(match_costs=costs)
        assert matcher.batched_fns is None
        layer = _layer(2, 7, 6, [(64, 80), (48, 64)])
        s_idx, t_idx = matcher.adaptive_match(*layer)
        assert s_idx.shape == t_idx.shape == (2, 6)


@pytest.mark.parametrize('dtype', DTYPES)
@pytest.mark.parametrize('bs,ns,nt,shapes', CASES)
def test_fast_path_equals_generic_path(bs, ns, nt, shapes, dtype):
    layer = _layer(bs, ns, nt, shapes, dtype=dtype, seed=bs * 100 + ns)
    fast, generic = MixMatcher(), MixMatcher(batched_costs=False)
    reference = _reference_costs(*layer)
    fast_costs = fast.batch_cost_matrices(*layer)
    generic_costs = generic.batch_cost_matrices(*layer)
    assert fast_costs.dtype == generic_costs.dtype == torch.float32
    assert fast_costs.shape == (bs, ns, nt)
    torch.testing.assert_close(fast_costs, reference, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(generic_costs, reference, rtol=1e-5, atol=1e-5)
    expected = _reference_match(reference)
    for matcher in (fast, generic):
        s_idx, t_idx = matcher.adaptive_match(*layer)
        assert s_idx.dtype == t_idx.dtype == torch.long
        assert torch.equal(s_idx, expected[0]) and torch.equal(t_idx, expected[1])


def test_non_default_batched_costs_equal_mmdet():
    """Every batched form, with its other options (xyxy L1, plain IoU, other weights)."""
    costs = (
        dict(type='SoftLabelBCECost', weight=0.5),
        dict(type='BBoxL1Cost', weight=3.0, box_format='xyxy'),
        dict(type='IoUCost', iou_mode='iou', weight=1.5),
    )
    layer = _layer(3, 12, 15, [(64, 80), (96, 128), (48, 112)], seed=7)
    fast = MixMatcher(match_costs=costs)
    assert fast.batched_fns is not None
    reference = _reference_costs(*layer, match_costs=costs)
    torch.testing.assert_close(fast.batch_cost_matrices(*layer), reference, rtol=1e-5, atol=1e-5)
    s_idx, t_idx = fast.adaptive_match(*layer)
    expected = _reference_match(reference)
    assert torch.equal(s_idx, expected[0]) and torch.equal(t_idx, expected[1])


@pytest.mark.parametrize('dtype', [torch.float16, torch.bfloat16])
def test_low_precision_inputs_match_as_their_fp32_values(dtype):
    """Image sizes are not rounded to the inputs' dtype (1333 is no bf16, 2049 no fp16 value)."""
    layer = _layer(2, 9, 9, [(800, 1333), (2501, 2049)], dtype=dtype, seed=3)
    upcast = [x.float() if torch.is_tensor(x) else x for x in layer]
    for matcher in (MixMatcher(), MixMatcher(batched_costs=False)):
        costs = matcher.batch_cost_matrices(*layer)
        torch.testing.assert_close(costs, matcher.batch_cost_matrices(*upcast))
        torch.testing.assert_close(costs, _reference_costs(*upcast), rtol=1e-5, atol=1e-5)


def test_costs_are_fp32_under_autocast():
    layer = _layer(2, 11, 11, [(64, 80), (96, 128)], num_classes=80, seed=5)
    for matcher in (MixMatcher(), MixMatcher(batched_costs=False)):
        expected = matcher.batch_cost_matrices(*layer)
        with torch.autocast('cpu', dtype=torch.bfloat16):
            costs = matcher.batch_cost_matrices(*layer)
        assert costs.dtype == torch.float32
        torch.testing.assert_close(costs, expected, rtol=0, atol=0)


@pytest.mark.parametrize('batched', [True, False])
def test_non_finite_costs_never_reach_the_solver(batched, monkeypatch):
    layer = list(_layer(3, 6, 5, [(64, 80), (96, 128), (48, 112)], dtype=torch.float16))
    s_logits, s_boxes, t_logits, t_boxes = (x.clone() for x in layer[:4])
    s_logits[0, 2] = float('nan')
    s_boxes[1, 3] = float('inf')
    t_logits[2, 0, 1] = float('-inf')
    t_boxes[2, 4] = float('nan')
    seen = []

    def checked_solver(cost):
        seen.append(np.isfinite(cost).all())
        return linear_sum_assignment(cost)

    monkeypatch.setattr(solver_module, 'linear_sum_assignment', checked_solver)
    matcher = MixMatcher(batched_costs=batched)
    layer = [s_logits, s_boxes, t_logits, t_boxes, layer[4]]
    assert torch.isfinite(matcher.batch_cost_matrices(*layer)).all()
    s_idx, t_idx = matcher.adaptive_match(*layer)
    assert len(seen) == 3 and all(seen)
    assert all(sorted(row.tolist()) == list(range(5)) for row in t_idx)
    assert all(len(set(row.tolist())) == 5 for row in s_idx)


def test_no_teacher_queries_gives_empty_pairs():
    layer = _layer(2, 5, 0, [(64, 80), (96, 128)])
    for matcher in (MixMatcher(), MixMatcher(batched_costs=False)):
        s_idx, t_idx = matcher.adaptive_match(*layer)
        assert s_idx.shape == t_idx.shape == (2, 0)


@pytest.mark.parametrize('shape', [(2, 90, 90), (2, 90, 30), (3, 30, 90), (1, 0, 5), (2, 7, 0)])
def test_pairwise_giou_is_mmdet_giou_bit_for_bit(shape):
    """The in-place GIoU of the batched IoU cost equals mmdet's ``bbox_overlaps`` exactly, on
    boxes of every kind: zero-size, identical, nested, disjoint, touching."""
    from mmdet.structures.bbox import bbox_overlaps

    from mmdet_detrdistill.models.task_modules.batched_match_costs import pairwise_giou

    bs, n, m = shape
    g = torch.Generator().manual_seed(sum(shape))

    def boxes(k):
        xy = torch.rand(bs, k, 2, generator=g) * 300
        b = torch.cat([xy, xy + torch.rand(bs, k, 2, generator=g) * 100], -1)
        b[:, ::5, 2:] = b[:, ::5, :2]  # zero-size
        b[:, 1::5] = b[:, 1::5].round()  # on the pixel grid: touching edges, equal corners
        return b

    b1, b2 = boxes(n), boxes(m)
    k = min(n, m, 4)
    b2[:, :k] = b1[:, :k]  # identical boxes
    j = min(n, m, k + 2)
    b2[:, k:j] = b1[:, k:j] * 0.5 + 100  # nested or disjoint
    expected = bbox_overlaps(b1, b2, mode='giou', is_aligned=False)
    got = pairwise_giou(b1, b2)
    assert got.shape == expected.shape == (bs, n, m)
    assert torch.equal(got.view(torch.int32), expected.view(torch.int32))  # same bits
