"""Folded group self-attention computes what the block-diagonal mask computes."""

import dataclasses

import pytest
import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmdet.registry import MODELS

from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.models.layers import (
    FoldedGroupLayout,
    fold_groups,
    folded_self_attention,
    unfold_groups,
)
from mmdet_detrdistill.testing import FAMILY_CONFIGS, distiller_cfg, make_batch, tiny_detr_cfg

FAMILIES = list(FAMILY_CONFIGS)
CLOSE = dict(atol=1e-5, rtol=1e-5)


def _model(family, fold=True):
    """A tiny group detector; ``fold`` is its ``fold_group_self_attention`` option."""
    torch.manual_seed(0)
    cfg = to_group_detector_cfg(tiny_detr_cfg(family), 'student')
    model = MODELS.build(dict(cfg, fold_group_self_attention=fold))
    model.init_weights()
    return model.eval()  # dropout off: the two paths are compared exactly


def _twin(family, model, fold):
    """``model``'s weights in a model built with ``fold_group_self_attention=fold``."""
    twin = _model(family, fold)
    twin.load_state_dict(model.state_dict())
    return twin


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


def _variants(model):
    """The own group (Conditional DETR), a group of its size, a smaller one, a padded one."""
    own = _own(model, make_batch(model))
    same = _noisy_copy(own, 'a', 1)
    smaller = dataclasses.replace(same, query=same.query[:, :5], query_pos=same.query_pos[:, :5])
    padded = dataclasses.replace(same, valid=torch.ones(same.query.shape[:2], dtype=torch.bool))
    return own, same, smaller, padded


def _hidden(model, batch, groups, fold):
    assert model.fold_group_self_attention == fold  # the path is the model's config option
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
    model = _twin(family, model, fold=False)
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
    own, same, smaller, padded = _variants(model)
    assert model.folds_self_attention([own, same])
    assert not model.folds_self_attention([own])
    assert not model.folds_self_attention([own, smaller])
    assert not model.folds_self_attention([own, padded])
    model = _twin('conditional', model, fold=False)
    assert not model.folds_self_attention([own, same])


def test_folding_refuses_a_mask_and_positional_inputs():
    attn = _model('conditional').decoder.layers[0].self_attn
    x = torch.randn(2, 4, attn.embed_dims)
    layout = FoldedGroupLayout(2)
    with pytest.raises(ValueError, match='no self-attention mask'):
        folded_self_attention(
            attn, layout, query=x, key=x, query_pos=x, key_pos=x, attn_mask=torch.zeros(4, 4).bool()
        )
    with pytest.raises(TypeError, match='by keyword'):
        folded_self_attention(attn, layout, x, x, x)
    assert attn(query=x, key=x, query_pos=x, key_pos=x).shape == x.shape  # module unchanged


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('method', ['d3etr', 'detrdistill'])
def test_distillation_losses_unchanged_by_folding(family, method, monkeypatch):
    """Every loss (attention-map losses included) is the same on both paths."""
    entered = []
    post_init = FoldedGroupLayout.__post_init__
    monkeypatch.setattr(
        FoldedGroupLayout, '__post_init__', lambda self: entered.append(1) or post_init(self)
    )
    name = dict(d3etr='D3ETRDistiller', detrdistill='DETRDistillDistiller')[method]
    model = _distiller(family, name)
    batch = make_batch(model)
    assert model.student.fold_group_self_attention
    with torch.no_grad():
        folded = model(**batch, mode='loss')
        assert entered == [1]  # the student's decoder ran folded
        model = _distiller(family, name, fold=False, weights_of=model)
        masked = model(**batch, mode='loss')
    assert entered == [1] and folded.keys() == masked.keys()
    for key in folded:
        torch.testing.assert_close(folded[key], masked[key], atol=1e-4, rtol=1e-4, msg=key)


def _distiller(family, name, fold=True, weights_of=None):
    """A tiny distiller (dropout off) whose student has ``fold_group_self_attention=fold``;
    with ``weights_of``, that distiller's student and teacher weights."""
    torch.manual_seed(0)
    student = dict(tiny_detr_cfg(family), fold_group_self_attention=fold)
    model = MODELS.build(distiller_cfg(student, tiny_detr_cfg(family), name))
    model.init_weights()
    if weights_of is not None:
        model.load_state_dict(weights_of.state_dict())
        model.teacher.load_state_dict(weights_of.teacher.state_dict())
    return model.eval()  # dropout off


def _padded_group(own, name, seed, size, valid_per_image):
    """A group of ``size`` queries per image, the first ``valid_per_image[b]`` real."""
    group = _noisy_copy(own, name, seed)
    cut = dict(query=group.query[:, :size])
    if group.query_pos is not None:
        cut['query_pos'] = group.query_pos[:, :size]
    if group.reference is not None:
        cut['reference'] = group.reference[:, :size]
    valid = torch.arange(size)[None] < torch.tensor(valid_per_image)[:, None]
    return dataclasses.replace(group, valid=valid, **cut)


def _tail_layout(model, batch):
    """OD-DETR's layout: own, an equal group, then two padded groups of 4 slots."""
    own = _own(model, batch)
    bs = own.query.shape[0]
    return own, [
        _noisy_copy(own, 'init', 1),
        _padded_group(own, 'aux0', 2, 4, [4, 2][:bs]),
        _padded_group(own, 'aux1', 3, 4, [2, 4][:bs]),
    ]


@pytest.mark.parametrize('family', FAMILIES)
def test_folded_head_with_masked_tail_equals_masked_outputs_and_gradients(family):
    model = _model(family)
    batch = make_batch(model)
    own, groups = _tail_layout(model, batch)
    assert model.num_folded_groups([own, *groups]) == 2
    assert not model.folds_self_attention([own, *groups])
    calls = []
    attn = model.decoder_attention_modules()['self'][0]
    handle = attn.register_forward_hook(  # runs before the fold's own forward hook
        lambda m, a, kw, out: calls.append((tuple(out.shape), kw.get('attn_mask') is not None)),
        with_kwargs=True,
    )
    split, slices = _hidden(model, batch, groups, fold=True)
    handle.remove()
    split_grads = torch.autograd.grad(split.square().sum(), list(model.decoder.parameters()))
    model = _twin(family, model, fold=False)
    masked, _ = _hidden(model, batch, groups, fold=False)
    masked_grads = torch.autograd.grad(masked.square().sum(), list(model.decoder.parameters()))
    bs, n = own.query.shape[:2]
    # two calls per layer: the folded head (bs*2, n) without a mask, the tail (bs, 8) with one
    dim = own.query.shape[2]
    assert calls == [((bs * 2, n, dim), False), ((bs, 8, dim), True)]
    valid = torch.cat([torch.ones(bs, 2 * n, dtype=torch.bool)] + [g.valid for g in groups[1:]], 1)
    # padding slots only see themselves in both paths; compare real queries (and all of them)
    torch.testing.assert_close(split[:, valid], masked[:, valid], **CLOSE)
    torch.testing.assert_close(split, masked, **CLOSE)
    for s, m in zip(split_grads, masked_grads):
        torch.testing.assert_close(s, m, atol=1e-4, rtol=1e-4)
    assert list(slices) == ['own', 'init', 'aux0', 'aux1']


@pytest.mark.parametrize('family', FAMILIES)
def test_folded_head_and_tail_cannot_see_each_other(family):
    model = _model(family)
    batch = make_batch(model)
    own, groups = _tail_layout(model, batch)
    other_tail = [groups[0], groups[1], _padded_group(own, 'aux1', 9, 4, [2, 4])]
    other_head = [_noisy_copy(own, 'init', 7), groups[1], groups[2]]
    with torch.no_grad():
        base, sl = _hidden(model, batch, groups, fold=True)
        tail_changed, _ = _hidden(model, batch, other_tail, fold=True)
        head_changed, _ = _hidden(model, batch, other_head, fold=True)
    head = slice(0, sl['init'].stop)
    torch.testing.assert_close(tail_changed[:, :, head], base[:, :, head], **CLOSE)
    torch.testing.assert_close(tail_changed[:, :, sl['aux0']], base[:, :, sl['aux0']], **CLOSE)
    torch.testing.assert_close(head_changed[:, :, sl['own']], base[:, :, sl['own']], **CLOSE)
    for name in ('aux0', 'aux1'):
        torch.testing.assert_close(head_changed[:, :, sl[name]], base[:, :, sl[name]], **CLOSE)


def test_fold_plan_per_layout():
    model = _model('conditional')
    own, same, smaller, padded = _variants(model)
    assert model.num_folded_groups([own, same, same, smaller]) == 3
    assert model.num_folded_groups([own, same, padded]) == 2
    assert model.num_folded_groups([own, smaller, same]) == 0  # the equal groups must lead
    assert model.num_folded_groups([own]) == 0
    assert model.group_self_attn_mask([smaller]) is None  # one unpadded tail group: no mask
    model = _twin('conditional', model, fold=False)
    assert model.num_folded_groups([own, same, padded]) == 0


def test_unpadded_tail_of_another_size_runs_unmasked_and_matches():
    model = _model('conditional')
    batch = make_batch(model)
    own = _own(model, batch)
    same = _noisy_copy(own, 'a', 1)
    smaller = _noisy_copy(own, 'b', 2)
    smaller = dataclasses.replace(
        smaller, query=smaller.query[:, :5], query_pos=smaller.query_pos[:, :5]
    )
    with torch.no_grad():
        split, _ = _hidden(model, batch, [same, smaller], fold=True)
        masked, _ = _hidden(_twin('conditional', model, False), batch, [same, smaller], fold=False)
    torch.testing.assert_close(split, masked, **CLOSE)


def test_tail_mask_must_cover_the_tail():
    with pytest.raises(ValueError, match='tail_mask covers 3 queries'):
        FoldedGroupLayout(2, tail_queries=4, tail_mask=torch.zeros(3, 3).bool())


@pytest.mark.parametrize('family', FAMILIES)
def test_oddetr_losses_unchanged_by_folding_with_a_tail(family, monkeypatch):
    """OD-DETR (own + initial-query group folded, auxiliary groups as the tail)."""
    tails = []
    post_init = FoldedGroupLayout.__post_init__

    def spy(self):
        post_init(self)
        tails.append(self.tail_queries)

    monkeypatch.setattr(FoldedGroupLayout, '__post_init__', spy)
    model = _distiller(family, 'ODDETRDistiller')
    batch = make_batch(model)
    # (two-stage: the EMA teacher also decodes the student's proposals, as a second group of
    # equal size: folded without a tail, in both runs below)
    with torch.no_grad():
        split = model(**batch, mode='loss')
        student_tails = [t for t in tails if t > 0]
        assert len(student_tails) == 1  # folded, with the auxiliary groups as tail
        model = _distiller(family, 'ODDETRDistiller', fold=False, weights_of=model)
        masked = model(**batch, mode='loss')
    assert [t for t in tails if t > 0] == student_tails and split.keys() == masked.keys()
    for key in split:
        torch.testing.assert_close(split[key], masked[key], atol=1e-4, rtol=1e-4, msg=key)


def _blocks_equal(recorded, masked, bs):
    """Every group's self-attention block, every layer, equals the masked path's."""
    for r_layer, m_layer in zip(recorded.attn['self'], masked.attn['self']):
        for name, s in recorded.slices.items():
            idx = torch.arange(s.stop - s.start).expand(bs, -1)
            block = r_layer[name].rows(idx, idx)
            torch.testing.assert_close(block, m_layer[name].rows(idx, idx), **CLOSE, msg=name)


@pytest.mark.parametrize('family', FAMILIES)
def test_recording_attention_keeps_the_tail_layout_and_each_groups_block(family):
    """A recorder keeps one record per layer and call: with a tail layout the decoder still
    runs folded + tail while recording, and each group's block (from its call) equals the
    block of the masked path's one (bs, N, N) record."""
    from mmdet_detrdistill.models.distillers import DETRDistillerBase

    model = _model(family)
    batch = make_batch(model)
    own, groups = _tail_layout(model, batch)
    args = (batch['inputs'], batch['data_samples'], groups, ('self', 'cross'))
    with torch.no_grad():
        recorded = DETRDistillerBase.decoder_outputs(model, *args)
        masked = DETRDistillerBase.decoder_outputs(_twin(family, model, fold=False), *args)
    bs = own.query.shape[0]
    total = sum(s.stop - s.start for s in recorded.slices.values())
    own_rec, init_rec = (recorded.attn['self'][0][n].record for n in ('own', 'init'))
    assert own_rec.shape == init_rec.shape == (bs, own.num_queries, own.num_queries)  # folded
    assert recorded.attn['self'][0]['aux0'].record.shape == (bs, 8, 8)  # the tail call
    assert recorded.attn['self'][0]['aux1'].offset == 4
    assert masked.attn['self'][0]['aux1'].record.shape == (bs, total, total)
    _blocks_equal(recorded, masked, bs)
    for r, m in zip(recorded.attn['cross'], masked.attn['cross']):
        torch.testing.assert_close(r.full(), m.full(), **CLOSE)
    torch.testing.assert_close(recorded.cls_scores, masked.cls_scores, **CLOSE)


def _lead_fold_tail_inputs(dim=8):
    """bs 2: a lead of 5 queries, 2 groups of 3, a tail of 4; and the one mask of all of them
    (the lead sees itself under its own mask, a group only itself, the tail under its mask)."""
    torch.manual_seed(0)
    x, pos = torch.randn(2, 15, dim), torch.randn(2, 15, dim)
    lead_mask = torch.rand(5, 5) > 0.5
    lead_mask.fill_diagonal_(False)  # every query sees one key at least
    tail_mask = torch.tensor([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 1], [1, 1, 1, 0]]).bool()
    mask = torch.ones(15, 15, dtype=torch.bool)
    for block, sub in ((slice(0, 5), lead_mask), (slice(11, 15), tail_mask)):
        mask[block, block] = sub
    for block in (slice(5, 8), slice(8, 11)):
        mask[block, block] = False
    layout = FoldedGroupLayout(
        2, tail_queries=4, tail_mask=tail_mask, lead_queries=5, lead_mask=lead_mask
    )
    return x, pos, mask, layout


def test_lead_folded_groups_and_tail_equal_one_masked_call():
    x, pos, mask, layout = _lead_fold_tail_inputs()
    attn = MultiheadAttention(8, 2, batch_first=True).eval()
    calls = []
    attn.register_forward_hook(lambda m, a, out: calls.append(tuple(out.shape[:2])))
    inputs = dict(query=x, key=x, value=x, query_pos=pos, key_pos=pos)
    with torch.no_grad():
        split = folded_self_attention(attn, layout, **inputs)
        calls_split = list(calls)
        masked = attn(**inputs, attn_mask=mask)
    assert calls_split == [(2, 5), (4, 3), (2, 4)]  # lead, folded (bs * G rows), tail
    torch.testing.assert_close(split, masked, **CLOSE)


def test_lead_mask_must_cover_the_lead_and_groups_the_middle():
    with pytest.raises(ValueError, match='lead_mask covers 3 queries'):
        FoldedGroupLayout(0, lead_queries=4, lead_mask=torch.zeros(3, 3).bool())
    attn = _model('deformable').decoder.layers[0].self_attn
    x = torch.randn(2, 7, attn.embed_dims)
    with pytest.raises(ValueError, match='3 queries between the lead and the tail'):
        folded_self_attention(attn, FoldedGroupLayout(0, lead_queries=4), query=x, key=x, value=x)
