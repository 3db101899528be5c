"""Decoding one more query group on an encoder output already made (OD-DETR's second
teacher pass): the outputs the group gets next to the own queries, without the encoder."""

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.common import QueryGroup
from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.models.detectors.query_group_mixin import DECODER_INPUTS
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg, tiny_dino_cfg

SHAPES = ((3, 96, 96), (3, 96, 80))
CLOSE = dict(atol=1e-5, rtol=1e-5)
FAMILIES = {
    'dino': tiny_dino_cfg,
    'deformable-twostage': lambda: tiny_detr_cfg('deformable-twostage'),
}


def _model(family: str):
    torch.manual_seed(0)
    model = MODELS.build(to_group_detector_cfg(FAMILIES[family](), 'student'))
    model.init_weights()
    return model


def _proposals(model, own: QueryGroup, seed: int = 3) -> QueryGroup:
    """Other proposals, one per own query (as a student's are), made this model's way."""
    g = torch.Generator().manual_seed(seed)
    boxes = own.reference.detach() + 0.05 * torch.randn(own.reference.shape, generator=g)
    return model.proposal_query_group('other', boxes.clamp(0.05, 0.95))


def _with_group(model, batch, make_group):
    """(head inputs, slices, group) of a pass with the group next to the own queries."""
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'])
        _, _, own = model.forward_transformer_with_groups(feats, batch['data_samples'])
        group = make_group(own)
        head_inputs, slices, _ = model.forward_transformer_with_groups(
            feats, batch['data_samples'], [group]
        )
    return head_inputs, slices, group


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_the_group_alone_gets_what_it_gets_next_to_the_own_queries(family, monkeypatch):
    model = _model(family).eval()
    batch = make_batch(model, image_shapes=SHAPES, training=False)
    head_inputs, slices, group = _with_group(model, batch, lambda own: _proposals(model, own))
    encoder_calls = []
    monkeypatch.setattr(model, 'forward_encoder', lambda **kw: encoder_calls.append(kw))
    with torch.no_grad():
        alone = model.decode_query_group(head_inputs[DECODER_INPUTS], group)
    assert encoder_calls == []  # the encoder's memory is reused
    mine = slices['other']
    torch.testing.assert_close(
        alone['hidden_states'], head_inputs['hidden_states'][:, :, mine], **CLOSE
    )
    for got, want in zip(alone['references'], head_inputs['references']):
        torch.testing.assert_close(got, want[:, mine], **CLOSE)
    # the test can fail: the own queries' outputs are not the group's
    assert not torch.allclose(
        alone['hidden_states'], head_inputs['hidden_states'][:, :, slices['own']]
    )


def test_dino_decodes_the_group_without_the_denoising_queries_of_a_training_pass():
    model = _model('dino')
    batch = make_batch(model, image_shapes=SHAPES)  # training: DN queries lead
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'])
        head_inputs, _, own = model.forward_transformer_with_groups(feats, batch['data_samples'])
        assert head_inputs['dn_meta'] is not None
        group = _proposals(model, own)
        trained = model.decode_query_group(head_inputs[DECODER_INPUTS], group)
        model.eval()
        head_inputs, _, _ = model.forward_transformer_with_groups(feats, batch['data_samples'])
        evaluated = model.decode_query_group(head_inputs[DECODER_INPUTS], group)
    assert trained['hidden_states'].shape[2] == model.num_queries
    torch.testing.assert_close(trained['hidden_states'], evaluated['hidden_states'], **CLOSE)


@pytest.mark.parametrize('family', sorted(FAMILIES))
def test_oddetr_teacher_decodes_the_students_proposals_without_its_encoder(family, monkeypatch):
    cfg = FAMILIES[family]()
    torch.manual_seed(0)
    model = MODELS.build(distiller_cfg(cfg, cfg, method='ODDETRDistiller'))
    model.init_weights()
    model.eval()
    batch = make_batch(model, image_shapes=SHAPES, training=False)
    args = (batch['inputs'], batch['data_samples'], ())
    with torch.no_grad():
        student_out = model.decoder_outputs(model.student, *args)
        teacher_out = model.decoder_outputs(model.teacher, *args)
        # the old way: the teacher's whole transformer again, its own queries and the group
        group = model.teacher.proposal_query_group(
            'student_queries', student_out.own_queries.reference
        )
        full, slices, _ = model.teacher.forward_transformer_with_groups(
            teacher_out.feats, batch['data_samples'], [group]
        )
        want = model.teacher.bbox_head(full['hidden_states'], full['references'])
    calls = []
    monkeypatch.setattr(model.teacher, 'forward_encoder', lambda **kw: calls.append(kw))
    with torch.no_grad():
        twins = model.teacher_on_queries(
            student_out.own_queries, teacher_out, batch['data_samples']
        )
    assert calls == []
    mine = slices['student_queries']
    torch.testing.assert_close(twins.cls_scores, want[0][:, :, mine], **CLOSE)
    torch.testing.assert_close(twins.bbox_preds, want[1][:, :, mine], **CLOSE)


@pytest.mark.parametrize('method, kept', [('D3ETRDistiller', False), ('ODDETRDistiller', True)])
def test_the_teachers_memory_is_kept_only_by_a_method_that_decodes_on_it(method, kept, monkeypatch):
    cfg = tiny_dino_cfg()
    torch.manual_seed(0)
    model = MODELS.build(distiller_cfg(cfg, cfg, method=method))
    model.init_weights()
    seen = []
    groups = model.extra_query_groups
    monkeypatch.setattr(
        model, 'extra_query_groups', lambda out, samples: seen.append(out) or groups(out, samples)
    )
    model(**make_batch(model, image_shapes=SHAPES), mode='loss')
    assert (DECODER_INPUTS in seen[0].head_inputs) is kept
