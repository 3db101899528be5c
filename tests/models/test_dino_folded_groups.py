"""DINO in training: DN + own in one call under mmdet's mask, the extra groups folded apart.

Every comparison is train mode (DN queries on; DINO's dropout is 0), against the same model
with ``fold_group_self_attention=False`` (one call under the whole DN + group mask).
"""

import copy
import dataclasses

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.common import QueryGroup
from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.models.distillers import DETRDistillerBase
from mmdet_detrdistill.models.layers import FoldedGroupLayout
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_dino_cfg

SHAPES = ((3, 96, 96), (3, 96, 80))
CLOSE = dict(atol=1e-5, rtol=1e-5)
NUM_QUERIES = 10  # tiny_dino_cfg's own group


def _model(fold=True, weights_of=None):
    torch.manual_seed(0)
    cfg = to_group_detector_cfg(tiny_dino_cfg(), 'student')
    model = MODELS.build(dict(cfg, fold_group_self_attention=fold))
    model.init_weights()
    if weights_of is not None:
        model.load_state_dict(weights_of.state_dict())
    return model.train()


def _batch(model):
    return make_batch(model, image_shapes=SHAPES)


def _run(model, batch, groups, dn_seed=1, grad=False):
    """Hidden states (L, bs, d + N, dim), references, slices and the own group; the DN
    queries' noise drawn from ``dn_seed``."""
    torch.manual_seed(dn_seed)
    with torch.set_grad_enabled(grad):
        feats = model.extract_feat(batch['inputs'])
        head_inputs, slices, own = model.forward_transformer_with_groups(
            feats, batch['data_samples'], groups
        )
    return head_inputs['hidden_states'], head_inputs['references'], slices, own


def _group(own, name, seed, num=NUM_QUERIES, valid_per_image=None):
    """Boxes drawn from the own group's, noisy content; padded after ``valid_per_image[b]``."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, own.num_queries, (num,), generator=g)
    query = own.query[:, idx] + torch.randn(own.query[:, idx].shape, generator=g)
    valid = None
    if valid_per_image is not None:
        valid = torch.arange(num)[None] < torch.tensor(valid_per_image)[:, None]
    return QueryGroup(name, query.detach(), reference=own.reference[:, idx].detach(), valid=valid)


# layouts of the extra groups: (name, num queries, valid per image or None)
LAYOUTS = {
    'one equal group': [('a', NUM_QUERIES, None)],
    'two equal groups': [('a', NUM_QUERIES, None), ('b', NUM_QUERIES, None)],
    'oddetr: equal + padded tail': [
        ('init', NUM_QUERIES, None),
        ('aux0', 4, [4, 2]),
        ('aux1', 4, [2, 4]),
    ],
    'tail only (padded)': [('aux0', 4, [4, 2])],
    'another size, unpadded': [('a', 6, None)],
}


def _groups(own, layout, seed=0):
    return [_group(own, name, seed + i, num, v) for i, (name, num, v) in enumerate(layout)]


def _own(model, batch):
    return _run(model, batch, ())[3]


@pytest.mark.parametrize('layout', list(LAYOUTS))
def test_folded_equals_masked_with_denoising_queries(layout):
    model = _model()
    batch = _batch(model)
    groups = _groups(_own(model, batch), LAYOUTS[layout])
    folded, f_refs, slices, _ = _run(model, batch, groups, grad=True)
    f_grads = torch.autograd.grad(folded.square().sum(), list(model.decoder.parameters()))
    model = _model(fold=False, weights_of=model)
    masked, m_refs, _, _ = _run(model, batch, groups, grad=True)
    m_grads = torch.autograd.grad(masked.square().sum(), list(model.decoder.parameters()))
    assert slices['own'].start > 0  # DN queries lead
    torch.testing.assert_close(folded, masked, **CLOSE)
    for f, m in zip(f_refs, m_refs):
        torch.testing.assert_close(f, m, **CLOSE)
    for f, m in zip(f_grads, m_grads):
        torch.testing.assert_close(f, m, atol=1e-4, rtol=1e-4)


def test_folded_equals_masked_without_any_dn_query():
    """A batch without boxes has no DN query (d = 0): the lead is the own group under
    mmdet's all-visible mask."""
    model = _model()
    batch = make_batch(model, image_shapes=SHAPES, num_items=(0, 0))
    groups = _groups(_own(model, batch), LAYOUTS['oddetr: equal + padded tail'])
    folded, _, slices, _ = _run(model, batch, groups)
    masked = _run(_model(fold=False, weights_of=model), batch, groups)[0]
    assert slices['own'].start == 0
    torch.testing.assert_close(folded, masked, **CLOSE)


def _self_attn_calls(model):
    """Record (rows, queries, masked?) of each call of the first layer's self-attention."""
    calls = []
    handle = model.decoder.layers[0].self_attn.register_forward_hook(
        lambda m, a, kw, out: calls.append((*out.shape[:2], kw.get('attn_mask') is not None)),
        with_kwargs=True,
    )
    return calls, handle


def test_calls_are_dn_and_own_under_mmdets_mask_then_folded_groups_then_tail():
    model = _model()
    batch = _batch(model)
    groups = _groups(_own(model, batch), LAYOUTS['oddetr: equal + padded tail'])
    calls, handle = _self_attn_calls(model)
    _, _, slices, _ = _run(model, batch, groups)
    handle.remove()
    lead = slices['own'].stop  # d + n0
    assert calls == [(2, lead, True), (2 * 1, NUM_QUERIES, False), (2, 8, True)]


def test_layout_lead_is_mmdets_dn_mask(monkeypatch):
    layouts = []
    post_init = FoldedGroupLayout.__post_init__
    monkeypatch.setattr(
        FoldedGroupLayout, '__post_init__', lambda self: layouts.append(self) or post_init(self)
    )
    model = _model()
    batch = _batch(model)
    groups = _groups(_own(model, batch), LAYOUTS['two equal groups'])
    _run(model, batch, groups)
    dn_mask = model.dn_query_generator(batch['data_samples'])[2]  # depends on the GT count only
    (layout,) = layouts
    assert torch.equal(layout.lead_mask, dn_mask) and layout.lead_queries == dn_mask.shape[0]
    assert (layout.num_groups, layout.tail_queries, layout.tail_mask) == (2, 0, None)


@pytest.mark.parametrize('layout', ['two equal groups', 'oddetr: equal + padded tail'])
def test_no_group_sees_another_with_denoising_queries(layout):
    """Perturbing one part (an extra group; DN noise; the own content queries) changes that
    part's outputs and no other part's."""
    model = _model()
    batch = _batch(model)
    groups = _groups(_own(model, batch), LAYOUTS[layout])
    base, _, sl, _ = _run(model, batch, groups)
    lead = slice(0, sl['own'].stop)  # DN + own
    parts = {'lead': lead, **{g.name: sl[g.name] for g in groups}}

    def changes_only(out, part):
        for name, s in parts.items():
            if name == part:
                assert not torch.allclose(out[:, :, s], base[:, :, s], atol=1e-3), name
            else:
                torch.testing.assert_close(out[:, :, s], base[:, :, s], **CLOSE, msg=name)

    for i, group in enumerate(groups):  # one extra group's queries
        other = dataclasses.replace(group, query=group.query + 1.0)
        out = _run(model, batch, [*groups[:i], other, *groups[i + 1 :]])[0]
        changes_only(out, group.name)
    changes_only(_run(model, batch, groups, dn_seed=7)[0], 'lead')  # other DN noise
    with torch.no_grad():  # other own content queries
        model.query_embedding.weight.add_(1.0)
    changes_only(_run(model, batch, groups)[0], 'lead')


def _recorded(model, batch, groups):
    torch.manual_seed(1)  # the DN queries' noise
    with torch.no_grad():
        return DETRDistillerBase.decoder_outputs(
            model, batch['inputs'], batch['data_samples'], groups, ('self',)
        )


def test_recording_attention_keeps_the_lead_folded_and_tail_calls():
    """A recorder keeps one record per layer and call: with DN queries the decoder still runs
    DN + own, the folded groups and the tail apart, and each group's block, read from its
    call, equals the block of the masked path's one (bs, d + N, d + N) record."""
    model = _model()
    batch = _batch(model)
    groups = _groups(_own(model, batch), LAYOUTS['oddetr: equal + padded tail'])
    calls, handle = _self_attn_calls(model)
    out = _recorded(model, batch, groups)
    handle.remove()
    lead = out.slices['own'].stop  # d + n0
    assert calls == [(2, lead, True), (2, NUM_QUERIES, False), (2, 8, True)]
    first = out.attn['self'][0]
    assert (first['own'].record.shape, first['own'].offset) == ((2, lead, lead), lead - NUM_QUERIES)
    assert first['init'].record.shape == (2, NUM_QUERIES, NUM_QUERIES)
    assert (first['aux1'].record.shape, first['aux1'].offset) == ((2, 8, 8), 4)
    masked = _recorded(_model(fold=False, weights_of=model), batch, groups)
    total = out.slices['aux1'].stop
    assert masked.attn['self'][0]['own'].record.shape == (2, total, total)
    for r_layer, m_layer in zip(out.attn['self'], masked.attn['self']):
        for name, s in out.slices.items():
            idx = torch.arange(s.stop - s.start).expand(2, -1)
            got, want = r_layer[name].rows(idx, idx), m_layer[name].rows(idx, idx)
            torch.testing.assert_close(got, want, **CLOSE, msg=name)


def _d3etr(fold, state=None):
    torch.manual_seed(0)
    student = dict(tiny_dino_cfg(), fold_group_self_attention=fold)
    model = MODELS.build(distiller_cfg(student, tiny_dino_cfg(), 'D3ETRDistiller'))
    model.init_weights()
    if state is not None:
        model.load_state_dict(state[0])
        model.teacher.load_state_dict(state[1])
    return model.train()


def test_d3etr_records_attention_with_the_lead_and_folded_calls_and_same_losses():
    """D3ETR + DINO in training records its attention maps and still folds: per student
    layer a lead call (DN + own) and a folded call (the teacher-query group); its losses
    equal those of one masked call (``fold_group_self_attention=False``)."""
    folded_model = _d3etr(True)
    assert folded_model.attention_kinds() == {'self', 'cross'}
    state = (copy.deepcopy(folded_model.state_dict()), folded_model.teacher.state_dict())
    masked_model = _d3etr(False, copy.deepcopy(state))
    batch = _batch(folded_model)
    calls, handle = _self_attn_calls(folded_model.student)
    with torch.no_grad():
        torch.manual_seed(3)
        folded = folded_model(**batch, mode='loss')
        handle.remove()
        torch.manual_seed(3)
        masked = masked_model(**batch, mode='loss')
    assert [c[1:] for c in calls] == [(calls[0][1], True), (NUM_QUERIES, False)]
    assert calls[0][1] > NUM_QUERIES  # DN queries lead
    assert 'd3etr.fixed.d0.loss_self_attn' in folded and folded.keys() == masked.keys()
    for key in folded:
        torch.testing.assert_close(folded[key], masked[key], atol=1e-4, rtol=1e-4, msg=key)


def test_option_off_keeps_one_masked_call():
    model = _model(fold=False)
    batch = _batch(model)
    groups = _groups(_own(model, batch), LAYOUTS['two equal groups'])
    calls, handle = _self_attn_calls(model)
    _, _, slices, _ = _run(model, batch, groups)
    handle.remove()
    assert calls == [(2, slices['b'].stop, True)]


@pytest.mark.parametrize('method', ['DETRDistillDistiller', 'ODDETRDistiller'])
def test_distillation_losses_unchanged_by_folding_with_denoising_queries(method):
    def build(fold, state=None):
        torch.manual_seed(0)
        student = dict(tiny_dino_cfg(), fold_group_self_attention=fold)
        model = MODELS.build(distiller_cfg(student, tiny_dino_cfg(), method))
        model.init_weights()
        if state is not None:
            model.load_state_dict(state[0])
            model.teacher.load_state_dict(state[1])
        return model.train()

    folded_model = build(True)
    state = (copy.deepcopy(folded_model.state_dict()), folded_model.teacher.state_dict())
    masked_model = build(False, copy.deepcopy(state))
    batch = _batch(folded_model)
    with torch.no_grad():
        torch.manual_seed(3)
        folded = folded_model(**batch, mode='loss')
        torch.manual_seed(3)
        masked = masked_model(**batch, mode='loss')
    assert 'dn_loss_cls' in folded and folded.keys() == masked.keys()
    for key in folded:
        torch.testing.assert_close(folded[key], masked[key], atol=1e-4, rtol=1e-4, msg=key)
