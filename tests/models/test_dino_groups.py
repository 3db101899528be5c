"""DINO with query groups: mmdet's DINO when alone, denoising queries and groups kept apart."""

import copy

import pytest
import torch
from mmdet.models.layers import CdnQueryGenerator
from mmdet.registry import MODELS

from mmdet_detrdistill.models.common import QueryGroup
from mmdet_detrdistill.models.detectors import GroupDINO, to_group_detector_cfg
from mmdet_detrdistill.models.layers import build_dino_self_attn_mask
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg, tiny_dino_cfg

SHAPES = ((3, 96, 96), (3, 96, 80))
CLOSE = dict(atol=1e-5, rtol=1e-5)


def _model():
    torch.manual_seed(0)
    model = MODELS.build(to_group_detector_cfg(tiny_dino_cfg(), 'student'))
    model.init_weights()
    return model


def _batch(model):
    return make_batch(model, image_shapes=SHAPES)


def _run(model, batch, groups=(), seed=1):
    """Hidden states of all queries, slices, own group, dn_meta; DN noise drawn from ``seed``."""
    torch.manual_seed(seed)
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'])
        head_inputs, slices, own = model.forward_transformer_with_groups(
            feats, batch['data_samples'], groups
        )
    return head_inputs['hidden_states'], slices, own, head_inputs.get('dn_meta')


def _extra(own, name='extra', num=7, seed=2, padded=False):
    """A group made from the own group: a random subset of its boxes, noisy content."""
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, own.num_queries, (num,), generator=g)
    query = own.query[:, idx] + torch.randn(own.query[:, idx].shape, generator=g)
    valid = None
    if padded:  # the last slot of image 1 is padding
        valid = torch.ones(own.query.shape[0], num, dtype=torch.bool)
        valid[1, -1] = False
    return QueryGroup(name, query, reference=own.reference[:, idx], valid=valid)


def test_same_parameters_and_inference_as_mmdet():
    ours = _model().eval()
    theirs = MODELS.build(copy.deepcopy(tiny_dino_cfg())).eval()
    theirs.load_state_dict(ours.state_dict(), strict=True)  # same parameter names
    assert list(ours.state_dict()) == list(theirs.state_dict())
    batch = make_batch(ours, image_shapes=SHAPES, training=False)
    with torch.no_grad():
        expected = theirs(**batch, mode='predict')
        got = ours(**batch, mode='predict')
    for a, b in zip(got, expected):
        torch.testing.assert_close(a.pred_instances.bboxes, b.pred_instances.bboxes)
        torch.testing.assert_close(a.pred_instances.scores, b.pred_instances.scores)


@pytest.mark.parametrize('padded', [False, True])
def test_own_and_denoising_outputs_unchanged_by_an_extra_group(padded):
    model = _model().train()  # DN queries on; DINO's dropout is 0
    batch = _batch(model)
    alone, slices, own, dn_meta = _run(model, batch)
    num_dn = dn_meta['num_denoising_queries']
    assert num_dn > 0 and slices['own'] == slice(num_dn, num_dn + 10)
    together, slices2, _, _ = _run(model, batch, [_extra(own, padded=padded)])
    assert slices2['extra'] == slice(num_dn + 10, num_dn + 17)
    # DN queries [:num_dn] and the own group, exactly as without the group
    torch.testing.assert_close(together[:, :, : num_dn + 10], alone, **CLOSE)


def test_extra_group_does_not_see_the_denoising_queries():
    """The extra group's outputs are the same with DN queries (train: DN + own in one call,
    the group in another) and without (eval: folded with the own group): it sees itself
    only."""
    model = _model()
    batch = _batch(model)
    _, _, own, _ = _run(model.eval(), batch)
    extra = _extra(own, num=10)  # the own group's size: folds in eval mode
    without_dn, sl_eval, _, _ = _run(model.eval(), batch, [extra])
    with_dn, sl_train, _, dn_meta = _run(model.train(), batch, [extra])
    assert dn_meta['num_denoising_queries'] > 0
    torch.testing.assert_close(
        with_dn[:, :, sl_train['extra']], without_dn[:, :, sl_eval['extra']], **CLOSE
    )


def _dn_mask(num_targets, num_dn_groups, num_queries):
    gen = CdnQueryGenerator(num_classes=3, embed_dims=8, num_matching_queries=num_queries)
    return gen.generate_dn_mask(num_targets, num_dn_groups, device='cpu')


@pytest.mark.parametrize('num_targets, num_dn_groups', [(2, 3), (1, 1), (0, 1)])
@pytest.mark.parametrize('sizes', [(4, 3), (4, 4, 2)])
def test_mask_blocks(num_targets, num_dn_groups, sizes):
    dn_mask = _dn_mask(num_targets, num_dn_groups, sizes[0])
    d = dn_mask.shape[0] - sizes[0]
    groups = [QueryGroup(f'g{i}', torch.zeros(1, n, 8)) for i, n in enumerate(sizes)]
    mask = build_dino_self_attn_mask(dn_mask, groups, num_heads=2)
    assert mask.shape == (d + sum(sizes),) * 2 and mask.dtype == torch.bool
    own_end = d + sizes[0]
    assert torch.equal(mask[:own_end, :own_end], dn_mask)  # mmdet's DN part, unchanged
    start = own_end
    for n in sizes[1:]:
        block = slice(start, start + n)
        assert not mask[block, block].any()  # a group sees itself ...
        assert mask[block, :start].all() and mask[block, start + n :].all()  # ... only
        assert mask[:start, block].all() and mask[start + n :, block].all()  # nobody sees it
        start += n


def test_mask_with_a_padded_group_is_per_image():
    dn_mask = _dn_mask(2, 2, 4)
    d = dn_mask.shape[0] - 4
    valid = torch.tensor([[True, True, True], [True, True, False]])
    own = QueryGroup('own', torch.zeros(2, 4, 8))
    groups = [own, QueryGroup('g', torch.zeros(2, 3, 8), valid=valid)]
    mask = build_dino_self_attn_mask(dn_mask, groups, num_heads=2)
    assert mask.shape == (4, d + 7, d + 7)  # (bs * heads, N, N)
    assert torch.equal(mask[:, : d + 4, : d + 4], dn_mask.expand(4, -1, -1))
    assert mask[:, d + 4 :, : d + 4].all() and mask[:, : d + 4, d + 4 :].all()
    assert mask[2:, :-1, -1].all()  # image 1: the padding slot is seen by no other query ...
    assert not mask[2:, -1, -1].any()  # ... and sees only itself


def test_mask_without_groups_is_mmdets():
    dn_mask = _dn_mask(2, 2, 4)
    own = QueryGroup('own', torch.zeros(1, 4, 8))
    assert build_dino_self_attn_mask(dn_mask, [own], num_heads=2) is dn_mask
    assert build_dino_self_attn_mask(None, [own], num_heads=2) is None


def _distiller(method='D3ETRDistiller', **kwargs):
    torch.manual_seed(0)
    model = MODELS.build(distiller_cfg(tiny_dino_cfg(), tiny_dino_cfg(), method, **kwargs))
    model.init_weights()
    return model


def test_student_gt_losses_are_mmdets_dino_losses():
    model = _distiller(components=None)
    theirs = MODELS.build(copy.deepcopy(tiny_dino_cfg())).train()
    theirs.load_state_dict(model.student.state_dict())
    model.train()
    batch = _batch(model)
    torch.manual_seed(3)
    expected = theirs(**batch, mode='loss')
    torch.manual_seed(3)
    out = model.decoder_outputs(model.student, batch['inputs'], batch['data_samples'], ())
    losses = model.student_gt_loss(out, batch['data_samples'])
    assert [k for k in losses if k != 'layer_match_instability'] == list(expected)
    assert 'd0.dn_loss_cls' in losses and 'enc_loss_iou' in losses
    for key, value in expected.items():
        torch.testing.assert_close(losses[key], value, msg=key)


def test_d3etr_prediction_kd_vanishes_for_the_same_teacher_with_denoising_on():
    model = _distiller()
    model.teacher.load_state_dict(model.student.state_dict())
    model.train()  # student: DN queries and their losses; teacher: eval, no DN
    with torch.no_grad():
        losses = model(**_batch(model), mode='loss')
    assert 'dn_loss_cls' in losses and 'd0.dn_loss_bbox' in losses
    distill = {k: v.item() for k, v in losses.items() if k.startswith('d3etr.')}
    assert len(distill) == 2 * 2 * 5  # kinds x layers x losses
    assert max(abs(v) for v in distill.values()) < 1e-4, distill


def test_detrdistill_kd_vanishes_for_the_same_teacher_with_denoising_on():
    model = _distiller('DETRDistillDistiller')
    model.teacher.load_state_dict(model.student.state_dict())
    model.train()  # student: DN queries and their losses; teacher: eval, no DN
    with torch.no_grad():
        losses = model(**_batch(model), mode='loss')
    assert 'dn_loss_cls' in losses
    kd = {
        k: v.item()
        for k, v in losses.items()
        if k.startswith(('detrdistill.logits', 'detrdistill.feature'))
    }
    assert len(kd) == 2 * 3 + 2  # layers x (cls, L1, GIoU) + layers x feature
    assert max(abs(v) for v in kd.values()) < 1e-4, kd


def test_d3etr_step_gives_gradients_to_the_student_only():
    model = _distiller().train()
    losses = model(**_batch(model), mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    assert model.student.dn_query_generator.label_embedding.weight.grad is not None


def test_teacher_queries_are_its_selected_proposals_and_content():
    model = _distiller()
    batch = _batch(model)
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], batch['data_samples'], ())
    (group,) = model.extra_query_groups(t_out, batch['data_samples'])
    assert group.name == 'teacher_queries' and group.reference.shape == (2, 10, 4)
    torch.testing.assert_close(group.query[0], model.teacher.query_embedding.weight)
    torch.testing.assert_close(group.reference, t_out.head_inputs['references'][0])


def test_fixed_matching_refuses_another_query_format():
    twostage = tiny_detr_cfg('deformable-twostage')  # 256 wide, 4-d proposal boxes, not DINO
    with pytest.raises(ValueError, match='same query format.*matcher.fixed=False'):
        MODELS.build(distiller_cfg(tiny_dino_cfg(), twostage))


def test_oddetr_teacher_decodes_the_students_proposals_with_its_content_queries():
    model = _distiller('ODDETRDistiller').eval()  # the EMA teacher starts as the student
    batch = _batch(model)
    with torch.no_grad():
        args = (batch['inputs'], batch['data_samples'], ())
        student_out = model.decoder_outputs(model.student, *args)
        teacher_out = model.decoder_outputs(model.teacher, *args)
        guided = model.teacher_on_queries(
            student_out.own_queries, teacher_out, batch['data_samples']
        )
    assert guided.own_queries.name == 'student_queries'
    torch.testing.assert_close(guided.cls_scores, student_out.group('own')[0], **CLOSE)
    torch.testing.assert_close(guided.bbox_preds, student_out.group('own')[1], **CLOSE)


def _five_scale_dino_cfg():
    """A tiny DINO 5-scale (strides 4-64), as mmdet's Swin-L teacher: one more, finer level."""
    cfg = tiny_dino_cfg()
    cfg.backbone.out_indices = (0, 1, 2, 3)
    cfg.neck.update(in_channels=[16, 32, 64, 128], num_outs=5)
    cfg.num_feature_levels = 5
    cfg.encoder.layer_cfg.self_attn_cfg.num_levels = 5
    cfg.decoder.layer_cfg.cross_attn_cfg.num_levels = 5
    return cfg


# cross-attention maps of different level layouts are refused (their error names the key)
NO_CROSS_ATTN = dict(loss_cross_attn=None)


@pytest.mark.parametrize(
    'method, key, kwargs',
    [
        (
            'D3ETRDistiller',
            'd3etr.fixed.d1.loss_self_attn',
            dict(adaptive_losses=NO_CROSS_ATTN, fixed_losses=NO_CROSS_ATTN),
        ),
        ('DETRDistillDistiller', 'detrdistill.feature.d1.loss_feat', {}),  # strides 8-64 paired
    ],
)
def test_five_scale_teacher_distils_a_four_scale_student(method, key, kwargs):
    torch.manual_seed(0)
    cfg = distiller_cfg(tiny_dino_cfg(), _five_scale_dino_cfg(), method, **kwargs)
    model = MODELS.build(cfg)
    model.init_weights()
    losses = model.train()(**_batch(model), mode='loss')
    assert torch.isfinite(losses[key]) and losses[key] > 0


@pytest.mark.parametrize('method', ['DETRDistillDistiller', 'ODDETRDistiller'])
def test_other_methods_build_and_step(method):
    model = _distiller(method).train()
    losses = model(**_batch(model), mode='loss')
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total) and 'dn_loss_cls' in losses
    assert any(k.startswith(('detrdistill.', 'oddetr.')) for k in losses)
    total.backward()


def test_group_dino_is_the_dino_group_detector():
    cfg = to_group_detector_cfg(tiny_dino_cfg(), 'student')
    assert cfg.type == 'GroupDINO' and MODELS.get('GroupDINO') is GroupDINO
