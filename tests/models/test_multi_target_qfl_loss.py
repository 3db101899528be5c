"""MultiTargetQualityFocalLoss: QFL whose soft targets gather every (query, GT) pair of a query."""

import math

import torch
from mmdet.models.losses import QualityFocalLoss
from mmdet.registry import MODELS

import mmdet_detrdistill  # noqa: F401  (registers the loss)


def _qfl_term(x: float, y: float, beta: float = 2.0) -> float:
    """-|y - s|^beta [y log s + (1 - y) log(1 - s)], s = sigmoid(x): one (query, class)."""
    s = 1 / (1 + math.exp(-x))
    return -(abs(y - s) ** beta) * (y * math.log(s) + (1 - y) * math.log(1 - s))


def test_two_targets_one_shared_by_hand():
    """Query 0: its own GT A (class 0, IoU 0.6) and its twin's GT B (class 1, IoU 0.3);
    query 1: GT B too (class 1, IoU 0.7, shared with query 0's twin) and a twin GT of the same
    class (0.4, the lower quality of the class gives way); query 2: no target."""
    logits = torch.tensor([[0.2, -1.0], [-0.5, 0.3], [1.0, -2.0]], requires_grad=True)
    queries = torch.tensor([0, 0, 1, 1])
    labels = torch.tensor([0, 1, 1, 1])
    quality = torch.tensor([0.6, 0.3, 0.7, 0.4])
    loss = MODELS.build(dict(type='MultiTargetQualityFocalLoss', loss_weight=2.0))
    got = loss(logits, queries, labels, quality, avg_factor=4)
    y = [[0.6, 0.3], [0.0, 0.7], [0.0, 0.0]]
    want = (
        2.0 * sum(_qfl_term(logits[i, c].item(), y[i][c]) for i in range(3) for c in range(2)) / 4
    )
    assert math.isclose(got.item(), want, rel_tol=1e-6)
    got.backward()
    assert logits.grad[0, 0] < 0 and logits.grad[0, 1] < 0  # query 0 pulled to both classes
    assert (logits.grad[2] > 0).all()  # no target: background


def test_one_target_per_query_is_mmdets_quality_focal_loss():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(7, 4, generator=g)
    queries = torch.tensor([1, 3, 4, 6])
    labels = torch.tensor([2, 0, 0, 3])
    quality = torch.rand(4, generator=g)
    ours = MODELS.build(dict(type='MultiTargetQualityFocalLoss', beta=2.0, loss_weight=1.5))
    theirs = QualityFocalLoss(use_sigmoid=True, beta=2.0, loss_weight=1.5)
    mmdet_labels = torch.full((7,), 4)  # background: num_classes
    mmdet_labels[queries] = labels
    mmdet_scores = torch.zeros(7)
    mmdet_scores[queries] = quality
    want = theirs(logits, (mmdet_labels, mmdet_scores), avg_factor=4)
    torch.testing.assert_close(ours(logits, queries, labels, quality, avg_factor=4), want)


def test_quality_is_not_differentiated_and_no_pairs_is_all_background():
    logits = torch.randn(3, 2, requires_grad=True)
    quality = torch.tensor([0.5], requires_grad=True)
    loss = MODELS.build(dict(type='MultiTargetQualityFocalLoss'))
    loss(logits, torch.tensor([1]), torch.tensor([0]), quality, avg_factor=1).backward()
    assert quality.grad is None and logits.grad is not None
    empty = torch.zeros(0, dtype=torch.long)
    none = loss(logits, empty, empty, torch.zeros(0), avg_factor=1)
    s = logits.detach().sigmoid()
    want = (s.pow(2) * -torch.log1p(-s)).sum()
    torch.testing.assert_close(none, want)
