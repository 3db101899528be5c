"""MixMatcher's ``teacher_topk``: adaptive matching against the teacher's k most confident
queries (issue 22, item 4: a reduction of the 900 x 900 problems)."""

import numpy as np
import pytest
import torch
from component_pairs import loss_with_pairs
from matching_inputs import random_layers
from scipy.optimize import linear_sum_assignment

from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.models.task_modules.pairing import solve_pairings

METAS = [dict(img_shape=(64, 80)), dict(img_shape=(96, 72))]


def _layers(num_layers=3, bs=2, ns=40, nt=36, seed=0):
    return random_layers(num_layers, bs, ns, nt, seed=seed)


@pytest.mark.parametrize('k', [36, 50])
def test_k_at_least_the_teacher_queries_is_the_exact_matching(k):
    layers = _layers()
    exact = MixMatcher().adaptive_match_layers(*layers, METAS)
    reduced = MixMatcher(teacher_topk=k).adaptive_match_layers(*layers, METAS)
    assert torch.equal(exact[0], reduced[0]) and torch.equal(exact[1], reduced[1])


@pytest.mark.parametrize(('ns', 'k'), [(40, 8), (40, 1), (6, 10)])
def test_pairs_are_the_optimum_against_the_most_confident_teacher_queries(ns, k):
    """Every teacher index is one of the layer's k most confident queries; the pairs are the
    optimal assignment of the reduced (Ns x k) problem, K = min(Ns, k), sorted by teacher
    index."""
    s_cls, s_box, t_cls, t_box = _layers(ns=ns, nt=36, seed=k)
    matcher = MixMatcher(teacher_topk=k)
    s_idx, t_idx = matcher.adaptive_match_layers(s_cls, s_box, t_cls, t_box, METAS)
    assert s_idx.shape == t_idx.shape == (3, 2, min(ns, k))
    confidence = t_cls.sigmoid().amax(-1)  # (L, bs, Nt)
    for layer in range(3):
        for b in range(2):
            top = confidence[layer, b].topk(k).indices.sort().values
            assert set(t_idx[layer, b].tolist()) <= set(top.tolist())
            assert torch.all(t_idx[layer, b].diff() > 0)
            costs = matcher.batch_cost_matrices(
                s_cls[layer], s_box[layer], t_cls[layer][:, top], t_box[layer][:, top], METAS
            )[b].numpy()
            rows, cols = linear_sum_assignment(costs)
            expected = sorted(zip(top[cols].tolist(), rows.tolist()))
            got = sorted(zip(t_idx[layer, b].tolist(), s_idx[layer, b].tolist()))
            assert got == expected


def test_the_less_confident_teacher_queries_give_no_target():
    """Moving the boxes of the teacher queries outside the top-k changes no pair: they are not
    part of the problem."""
    s_cls, s_box, t_cls, t_box = _layers(seed=3)
    matcher = MixMatcher(teacher_topk=5)
    before = matcher.adaptive_match_layers(s_cls, s_box, t_cls, t_box, METAS)
    confidence = t_cls.sigmoid().amax(-1)
    moved = t_box.clone()
    out = confidence.topk(5, dim=-1).indices
    mask = torch.ones_like(confidence, dtype=torch.bool).scatter(-1, out, False)
    moved[mask] = moved[mask].flip(-1)  # the other queries' boxes change
    after = matcher.adaptive_match_layers(s_cls, s_box, t_cls, moved, METAS)
    assert torch.equal(before[0], after[0]) and torch.equal(before[1], after[1])


@pytest.mark.parametrize('bad', [0, -3, 2.5, True, '100'])
def test_bad_teacher_topk_names_the_key(bad):
    with pytest.raises(ValueError, match=r'model\.matcher\.teacher_topk.*positive int'):
        MixMatcher(teacher_topk=bad)


def test_distilled_pairs_follow_the_reduction():
    """Through D3ETR's adaptive component: k pairs per image and layer, and the loss keys are
    the exact matching's."""
    from mmdet_detrdistill.models.common import OWN_GROUP, DecoderOutputs
    from mmdet_detrdistill.models.components import AdaptiveMatchKD

    torch.manual_seed(0)
    L, bs, n, c = 2, 2, 12, 4

    def outputs():
        cls = torch.randn(L, bs, n, c)
        cxcy, wh = torch.rand(L, bs, n, 2) * 0.5 + 0.25, torch.rand(L, bs, n, 2) * 0.2 + 0.1
        box = torch.cat([cxcy, wh], -1)
        return cls, box

    s, t = outputs(), outputs()
    kwargs = dict(losses=dict(loss_self_attn=None, loss_cross_attn=None))
    exact = AdaptiveMatchKD(**kwargs)
    reduced = AdaptiveMatchKD(
        matcher=dict(type='MixMatcher', adaptive=True, fixed=False, teacher_topk=4), **kwargs
    )
    s_out = DecoderOutputs(*s, slices={OWN_GROUP: slice(0, n)}, own_queries=None)
    t_out = DecoderOutputs(*t, slices={OWN_GROUP: slice(0, n)}, own_queries=None)
    metas = [dict(img_shape=(64, 64))] * bs
    solved = solve_pairings([reduced.pairing, exact.pairing], s_out, t_out, metas)
    assert all(layer.pairs[0].shape == (bs, 4) for layer in solved[reduced.pairing].layers)
    assert [layer.pairs[0].shape for layer in solved[exact.pairing].layers] == [(bs, n)] * L
    from mmdet.structures import DetDataSample

    samples = [DetDataSample(metainfo=m) for m in metas]
    reduced_losses = loss_with_pairs(reduced, s_out, t_out, samples)
    assert reduced_losses.keys() == loss_with_pairs(exact, s_out, t_out, samples).keys()
    assert np.isfinite([v.item() for v in reduced_losses.values()]).all()
