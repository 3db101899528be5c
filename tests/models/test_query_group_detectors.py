"""Query groups in the decoders of every family are isolated from each other."""

import copy
import dataclasses

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.testing import FAMILY_CONFIGS, make_batch, tiny_detr_cfg

FAMILIES = list(FAMILY_CONFIGS)


def _build(family):
    model = MODELS.build(to_group_detector_cfg(tiny_detr_cfg(family), 'student'))
    model.init_weights()
    return model.eval()  # dropout off


def _run(model, batch, groups=()):
    feats = model.extract_feat(batch['inputs'])
    with torch.no_grad():
        head_inputs, slices, own = model.forward_transformer_with_groups(
            feats, batch['data_samples'], groups
        )
    return head_inputs['hidden_states'], slices, own


def _group_like(own, name, num, seed):
    """A valid group of `num` queries made from the own group: a random subset
    (references stay valid) with noise on the content/positional queries."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, own.num_queries, (num,), generator=g)

    def noisy(x):
        return None if x is None else x[:, idx] + torch.randn(x[:, idx].shape, generator=g)

    ref = None if own.reference is None else own.reference[:, idx]
    return dataclasses.replace(
        own, name=name, query=noisy(own.query), query_pos=noisy(own.query_pos), reference=ref
    )


@pytest.mark.parametrize('family', FAMILIES)
def test_no_group_equals_mmdet(family):
    cfg = tiny_detr_cfg(family)
    ours = _build(family)
    theirs = MODELS.build(copy.deepcopy(cfg)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same parameter names
    batch = make_batch(ours)
    with torch.no_grad():
        feats = theirs.extract_feat(batch['inputs'])
        expected = theirs.forward_transformer(feats, batch['data_samples'])['hidden_states']
    hidden, slices, _ = _run(ours, batch)
    assert list(slices) == ['own']
    torch.testing.assert_close(hidden, expected)


@pytest.mark.parametrize('family', FAMILIES)
def test_own_group_unchanged_by_extra_group(family):
    model = _build(family)
    batch = make_batch(model)
    alone, _, own = _run(model, batch)
    together, slices, _ = _run(model, batch, [_group_like(own, 'extra', 7, seed=1)])
    assert slices['extra'] == slice(10, 17)
    torch.testing.assert_close(together[:, :, slices['own']], alone, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize('family', FAMILIES)
def test_extra_group_depends_only_on_its_own_queries(family):
    model = _build(family)
    batch = make_batch(model)
    _, _, own = _run(model, batch)
    a = _group_like(own, 'a', 5, seed=1)
    b1, b2 = _group_like(own, 'b', 6, seed=2), _group_like(own, 'b', 6, seed=3)
    out1, sl, _ = _run(model, batch, [a, b1])
    out2, _, _ = _run(model, batch, [a, b2])
    a_alone, sl_a, _ = _run(model, batch, [a])
    close = dict(atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out1[:, :, sl['a']], out2[:, :, sl['a']], **close)
    torch.testing.assert_close(out1[:, :, sl['own']], out2[:, :, sl['own']], **close)
    torch.testing.assert_close(out1[:, :, sl['a']], a_alone[:, :, sl_a['a']], **close)
    # ... while group b itself does change (the test can fail)
    assert not torch.allclose(out1[:, :, sl['b']], out2[:, :, sl['b']], atol=1e-3)


@pytest.mark.parametrize('family', FAMILIES)
def test_without_mask_groups_would_interact(family):
    """The mask, not some accident of the layout, is what isolates groups."""
    model = _build(family)
    batch = make_batch(model)
    feats = model.extract_feat(batch['inputs'])
    with torch.no_grad():
        enc_in, dec_in = model.pre_transformer(feats, batch['data_samples'])
        tmp, _ = model.pre_decoder(**model.forward_encoder(**enc_in))
        dec_in.update(tmp)
        own = model.own_query_group(dec_in)
        merged = model.merge_query_groups(dec_in, [own, _group_like(own, 'x', 4, seed=5)])
        unmasked = model.forward_decoder(**merged)['hidden_states'][:, :, :10]
        alone = model.forward_decoder(**dec_in)['hidden_states']
    assert not torch.allclose(unmasked, alone, atol=1e-4)


def test_conditional_own_group_is_returned_as_it_entered_the_decoder():
    model = _build('conditional')
    _, _, own = _run(model, make_batch(model))
    assert own.name == 'own' and own.query.shape == (2, 10, 256) and not own.query.any()
    torch.testing.assert_close(own.query_pos[1], model.query_embedding.weight)


def test_unsupported_detector_type_is_refused():
    with pytest.raises(ValueError, match='supported types'):
        to_group_detector_cfg(dict(type='RetinaNet'), 'student')
