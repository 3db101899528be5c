import pytest
import torch
import torch.nn.functional as F
from mmdet.registry import TASK_UTILS
from mmengine.structures import InstanceData

from mmdet_detrdistill.models.task_modules import MixMatcher

META = dict(img_shape=(64, 80))


def _preds(bs, n, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(bs, n, c, generator=g) * 3
    cxcy = torch.rand(bs, n, 2, generator=g) * 0.6 + 0.2
    wh = torch.rand(bs, n, 2, generator=g) * 0.3 + 0.05
    return logits, torch.cat([cxcy, wh], -1)


def test_soft_label_bce_cost_matches_brute_force():
    cost_fn = TASK_UTILS.build(dict(type='SoftLabelBCECost', weight=2.0))
    logits, probs = torch.randn(5, 4), torch.rand(7, 4)
    cost = cost_fn(InstanceData(scores=logits), InstanceData(scores=probs))
    brute = torch.stack(
        [
            torch.stack(
                [
                    F.binary_cross_entropy_with_logits(logits[i], probs[j], reduction='sum')
                    for j in range(7)
                ]
            )
            for i in range(5)
        ]
    )
    torch.testing.assert_close(cost, 2.0 * brute, atol=1e-5, rtol=1e-5)


def test_adaptive_match_recovers_a_permutation():
    matcher = MixMatcher()
    logits, boxes = _preds(2, 12)
    perm = torch.stack([torch.randperm(12), torch.randperm(12)])
    t_logits = torch.stack([logits[b, perm[b]] for b in range(2)])
    t_boxes = torch.stack([boxes[b, perm[b]] for b in range(2)])
    s_idx, t_idx = matcher.adaptive_match(logits, boxes, t_logits, t_boxes, [META] * 2)
    assert torch.equal(t_idx, torch.arange(12).expand(2, -1))  # sorted by teacher index
    assert torch.equal(s_idx, perm)  # student query perm[b, j] <-> teacher query j


def test_one_image_alone_matches_as_in_batch():
    matcher = MixMatcher()
    s, sb = _preds(3, 9, seed=1)
    t, tb = _preds(3, 6, seed=2)
    batch = matcher.adaptive_match(s, sb, t, tb, [META] * 3)
    alone = matcher.adaptive_match(s[1:2], sb[1:2], t[1:2], tb[1:2], [META])
    assert batch[0].shape == (3, 6)  # K = min(Ns, Nt)
    assert torch.equal(batch[0][1], alone[0][0]) and torch.equal(batch[1][1], alone[1][0])


def test_non_finite_costs_never_reach_the_solver():
    matcher = MixMatcher()
    s, sb = _preds(1, 5)
    t, tb = _preds(1, 5, seed=3)
    s[0, 2] = float('nan')
    sb[0, 3] = float('inf')
    preds = InstanceData(scores=s[0], bboxes=sb[0] * 64)
    targets = InstanceData(scores=t[0].sigmoid(), labels=t[0].argmax(-1), bboxes=tb[0] * 64)
    assert torch.isfinite(matcher.cost_matrix(preds, targets, META)).all()
    s_idx, t_idx = matcher.adaptive_match(s, sb, t, tb, [META])
    assert sorted(s_idx[0].tolist()) == list(range(5))


def test_layer_pairs_and_fixed_match():
    assert MixMatcher.layer_pairs(6, 6) == [(i, i) for i in range(6)]
    assert MixMatcher.layer_pairs(2, 3) == [(0, 1), (1, 2)]
    assert MixMatcher.layer_pairs(3, 6)[-1] == (2, 5)
    s_idx, t_idx = MixMatcher().fixed_match(2, 4, torch.device('cpu'))
    assert torch.equal(s_idx, torch.arange(4).expand(2, -1)) and torch.equal(s_idx, t_idx)


@pytest.mark.parametrize('num_teacher', range(1, 9))
@pytest.mark.parametrize('num_student', range(1, 9))
def test_layer_pairs_stay_in_the_teacher_spread_evenly_and_end_together(num_student, num_teacher):
    """Every depth pair 1..8 x 1..8: one pair per student layer, in order, teacher indices in
    [0, Lt) and non-decreasing, last with last, identity at equal depth; a deeper student uses
    every teacher layer in blocks whose sizes differ by at most one, a shallower one never
    uses a teacher layer twice."""
    pairs = MixMatcher.layer_pairs(num_student, num_teacher)
    assert [s for s, _ in pairs] == list(range(num_student))
    teacher = [t for _, t in pairs]
    assert all(0 <= t < num_teacher for t in teacher), teacher
    assert teacher == sorted(teacher)
    assert pairs[-1] == (num_student - 1, num_teacher - 1)
    if num_student == num_teacher:
        assert teacher == list(range(num_student))
    if num_student >= num_teacher:
        blocks = [teacher.count(t) for t in range(num_teacher)]
        assert min(blocks) >= 1 and max(blocks) - min(blocks) <= 1, blocks
    else:
        assert len(set(teacher)) == num_student


def test_needs_at_least_one_kind():
    with pytest.raises(ValueError, match='adaptive'):
        MixMatcher(adaptive=False, fixed=False)
