"""Folded group self-attention computes what the block-diagonal mask computes."""

import dataclasses

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.models.layers import FoldedGroupSelfAttention, fold_groups, unfold_groups
from mmdet_detrdistill.testing import FAMILY_CONFIGS, distiller_cfg, make_batch, tiny_detr_cfg

FAMILIES = list(FAMILY_CONFIGS)
CLOSE = dict(atol=1e-5, rtol=1e-5)


def _model(family):
    torch.manual_seed(0)
    model = MODELS.build(to_group_detector_cfg(tiny_detr_cfg(family), 'student'))
    model.init_weights()
    return model.eval()  # dropout off: the two paths are compared exactly


def _own(model, batch):
    feats = model.extract_feat(batch['inputs'])
    with torch.no_grad():
        _, _, own = model.forward_transformer_with_groups(feats, batch['data_samples'])
    return own


def _noisy_copy(own, name, seed):
    """A group of the own group's size: its queries plus noise."""
    g = torch.Generator().manual_seed(seed)

    def noisy(x):
        return None if x is None else x + torch.randn(x.shape, generator=g)

    return dataclasses.replace(
        own, name=name, query=noisy(own.query), query_pos=noisy(own.query_pos)
    )


def _hidden(model, batch, groups, fold):
    model.fold_group_self_attention = fold
    feats = model.extract_feat(batch['inputs'])
    head_inputs, slices, _ = model.forward_transformer_with_groups(
        feats, batch['data_samples'], groups
    )
    return head_inputs['hidden_states'], slices


def test_fold_is_a_free_view_that_unfold_inverts():
    x = torch.arange(2 * 6 * 3).view(2, 6, 3)  # bs 2, 3 groups of 2 queries
    folded = fold_groups(x, 3)
    assert folded.shape == (6, 2, 3) and folded.data_ptr() == x.data_ptr()
    torch.testing.assert_close(folded[1 * 3 + 2], x[1, 4:6])  # row b*G + g = image b, group g
    torch.testing.assert_close(unfold_groups(folded, 3), x)
    with pytest.raises(ValueError, match='cannot be folded'):
        fold_groups(x, 4)


@pytest.mark.parametrize('family', FAMILIES)
def test_folded_equals_masked_outputs_and_gradients(family):
    model = _model(family)
    batch = make_batch(model)
    own = _own(model, batch)
    groups = [_noisy_copy(own, 'a', 1), _noisy_copy(own, 'b', 2)]
    assert model.folds_self_attention([own, *groups])
    folded, slices = _hidden(model, batch, groups, fold=True)
    folded_grads = torch.autograd.grad(folded.square().sum(), list(model.decoder.parameters()))
    masked, _ = _hidden(model, batch, groups, fold=False)
    masked_grads = torch.autograd.grad(masked.square().sum(), list(model.decoder.parameters()))
    torch.testing.assert_close(folded, masked, **CLOSE)
    for f, m in zip(folded_grads, masked_grads):
        torch.testing.assert_close(f, m, atol=1e-4, rtol=1e-4)
    assert list(slices) == ['own', 'a', 'b']


@pytest.mark.parametrize('family', FAMILIES)
def test_folded_groups_cannot_see_each_other(family):
    model = _model(family)
    batch = make_batch(model)
    own = _own(model, batch)
    with torch.no_grad():
        alone, _ = _hidden(model, batch, [], fold=True)
        out1, sl = _hidden(model, batch, [_noisy_copy(own, 'a', 1), _noisy_copy(own, 'b', 2)], True)
        out2, _ = _hidden(model, batch, [_noisy_copy(own, 'a', 1), _noisy_copy(own, 'b', 3)], True)
    torch.testing.assert_close(out1[:, :, sl['own']], alone, **CLOSE)
    torch.testing.assert_close(out1[:, :, sl['a']], out2[:, :, sl['a']], **CLOSE)
    assert not torch.allclose(out1[:, :, sl['b']], out2[:, :, sl['b']], atol=1e-3)  # b changed


def test_unequal_or_padded_groups_keep_the_mask():
    model = _model('conditional')
    own = _own(model, make_batch(model))
    same = _noisy_copy(own, 'a', 1)
    smaller = dataclasses.replace(same, query=same.query[:, :5], query_pos=same.query_pos[:, :5])
    padded = dataclasses.replace(same, valid=torch.ones(same.query.shape[:2], dtype=torch.bool))
    assert model.folds_self_attention([own, same])
    assert not model.folds_self_attention([own])
    assert not model.folds_self_attention([own, smaller])
    assert not model.folds_self_attention([own, padded])
    model.fold_group_self_attention = False
    assert not model.folds_self_attention([own, same])


def test_folding_refuses_a_mask_and_positional_inputs():
    attn = _model('conditional').decoder.layers[0].self_attn
    x = torch.randn(2, 4, attn.embed_dims)
    with FoldedGroupSelfAttention([attn], 2):
        with pytest.raises(ValueError, match='no self-attention mask'):
            attn(query=x, key=x, query_pos=x, key_pos=x, attn_mask=torch.zeros(4, 4).bool())
        with pytest.raises(TypeError, match='by keyword'):
            attn(x, x, x)
    assert attn(query=x, key=x, query_pos=x, key_pos=x).shape == x.shape  # hooks removed


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('method', ['d3etr', 'detrdistill'])
def test_distillation_losses_unchanged_by_folding(family, method, monkeypatch):
    """Every loss (attention-map losses included) is the same on both paths."""
    entered = []
    enter = FoldedGroupSelfAttention.__enter__
    monkeypatch.setattr(
        FoldedGroupSelfAttention, '__enter__', lambda self: entered.append(1) or enter(self)
    )
    name = dict(d3etr='D3ETRDistiller', detrdistill='DETRDistillDistiller')[method]
    torch.manual_seed(0)
    model = MODELS.build(distiller_cfg(tiny_detr_cfg(family), tiny_detr_cfg(family), name))
    model.init_weights()
    model.eval()  # dropout off
    batch = make_batch(model)
    assert model.student.fold_group_self_attention
    with torch.no_grad():
        folded = model(**batch, mode='loss')
        assert entered == [1]  # the student's decoder ran folded
        model.student.fold_group_self_attention = False
        masked = model(**batch, mode='loss')
    assert entered == [1] and folded.keys() == masked.keys()
    for key in folded:
        torch.testing.assert_close(folded[key], masked[key], atol=1e-4, rtol=1e-4, msg=key)
