"""Query groups in the Conditional DETR decoder are isolated from each other."""
import copy

import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.models.layers import QueryGroup
from mmdet_detrdistill.testing import make_batch, tiny_conditional_detr_cfg


def _build(cfg=None):
    cfg = cfg or tiny_conditional_detr_cfg()
    model = MODELS.build(to_group_detector_cfg(cfg, 'student'))
    model.init_weights()
    return model.eval()  # dropout off


def _run(model, batch, groups):
    feats = model.extract_feat(batch['inputs'])
    head_inputs, slices, _ = model.forward_transformer_with_groups(
        feats, batch['data_samples'], groups)
    return head_inputs['hidden_states'], head_inputs['references'], slices


def _random_group(name, bs, n, dim, seed):
    g = torch.Generator().manual_seed(seed)
    return QueryGroup(name, torch.randn(bs, n, dim, generator=g),
                      torch.randn(bs, n, dim, generator=g))


def test_no_group_equals_mmdet_conditional_detr():
    cfg = tiny_conditional_detr_cfg()
    ours = _build(cfg)
    theirs = MODELS.build(copy.deepcopy(cfg)).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same parameter names
    batch = make_batch(ours)
    with torch.no_grad():
        feats = theirs.extract_feat(batch['inputs'])
        expected = theirs.forward_transformer(feats, batch['data_samples'])
        hidden, refs, slices = _run(ours, batch, [])
    assert slices == {'own': slice(0, 10)}
    torch.testing.assert_close(hidden, expected['hidden_states'])
    torch.testing.assert_close(refs, expected['references'])


def test_own_group_unchanged_by_extra_group():
    model = _build()
    batch = make_batch(model)
    with torch.no_grad():
        alone, _, _ = _run(model, batch, [])
        extra = _random_group('extra', 2, 7, 256, seed=1)
        together, _, slices = _run(model, batch, [extra])
    assert slices['extra'] == slice(10, 17)
    torch.testing.assert_close(together[:, :, slices['own']], alone, atol=1e-5, rtol=1e-5)


def test_extra_group_depends_only_on_its_own_queries():
    model = _build()
    batch = make_batch(model)
    a = _random_group('a', 2, 5, 256, seed=1)
    b1, b2 = _random_group('b', 2, 6, 256, seed=2), _random_group('b', 2, 6, 256, seed=3)
    with torch.no_grad():
        out1, _, sl = _run(model, batch, [a, b1])
        out2, _, _ = _run(model, batch, [a, b2])
        a_alone, _, sl_a = _run(model, batch, [a])
    # changing group b does not move group a or the own group ...
    torch.testing.assert_close(out1[:, :, sl['a']], out2[:, :, sl['a']], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out1[:, :, sl['own']], out2[:, :, sl['own']], atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(out1[:, :, sl['a']], a_alone[:, :, sl_a['a']], atol=1e-5, rtol=1e-5)
    # ... while group b itself does change (the test can fail)
    assert not torch.allclose(out1[:, :, sl['b']], out2[:, :, sl['b']], atol=1e-3)


def test_without_mask_groups_would_interact():
    """Sanity check of the property above: the mask is what isolates groups."""
    model = _build()
    batch = make_batch(model)
    feats = model.extract_feat(batch['inputs'])
    with torch.no_grad():
        enc_in, dec_in = model.pre_transformer(feats, batch['data_samples'])
        tmp, _ = model.pre_decoder(**model.forward_encoder(**enc_in))
        dec_in.update(tmp)
        own = model.own_query_group(dec_in)
        extra = _random_group('x', 2, 4, 256, seed=5)
        merged = model.merge_query_groups(dec_in, [own, extra])
        unmasked = model.forward_decoder(**merged)['hidden_states'][:, :, :10]
        alone = model.forward_decoder(**dec_in)['hidden_states']
    assert not torch.allclose(unmasked, alone, atol=1e-4)


def test_own_group_is_returned_as_it_entered_the_decoder():
    model = _build()
    batch = make_batch(model)
    feats = model.extract_feat(batch['inputs'])
    with torch.no_grad():
        _, _, own = model.forward_transformer_with_groups(feats, batch['data_samples'])
    assert own.name == 'own' and own.query.shape == (2, 10, 256) and not own.query.any()
    torch.testing.assert_close(own.query_pos[1], model.query_embedding.weight)
