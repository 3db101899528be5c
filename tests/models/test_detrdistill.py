"""DETRDistill on every family: its three components, alone and with D3ETR."""

import pytest
import torch
from mmdet.registry import MODELS, TASK_UTILS

from mmdet_detrdistill.models.common import pred_instances
from mmdet_detrdistill.models.components import TEACHER_QUERY_GROUP
from mmdet_detrdistill.models.detectors import OWN_GROUP
from mmdet_detrdistill.models.task_modules import QueryPriorAssigner
from mmdet_detrdistill.testing import FAMILY_CONFIGS, distiller_cfg, make_batch, tiny_detr_cfg

FAMILIES = list(FAMILY_CONFIGS)
COMPONENTS = ('logits', 'feature', 'query_prior', 'contrastive')
ARGS = dict(
    logits='logits_kd', feature='feature_kd', query_prior='query_prior', contrastive='contrastive'
)


def _build(student, teacher, method='DETRDistillDistiller', seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(distiller_cfg(student, teacher, method=method, **kwargs))
    model.init_weights()
    return model


def _only(component):
    """DETRDistillDistiller arguments with one component on."""
    return {ARGS[c]: (dict() if c == component else None) for c in COMPONENTS}


def _total(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


@pytest.mark.parametrize('family', FAMILIES)
@pytest.mark.parametrize('component', COMPONENTS)
def test_each_component_trains_every_student_parameter_only(family, component):
    model = _build(tiny_detr_cfg(family), tiny_detr_cfg(family, num_queries=12), **_only(component))
    model.train()
    losses = model(**make_batch(model), mode='loss')
    mine = {k for k in losses if k.startswith('detrdistill.')}
    assert mine and all(k.startswith(f'detrdistill.{component}.d') for k in mine)
    assert all(torch.isfinite(v) for v in losses.values())
    _total(losses).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    unused = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused  # DDP needs no find_unused_parameters


@pytest.mark.parametrize('family', FAMILIES)
def test_kd_losses_zero_and_query_prior_is_the_teachers_own_loss_when_student_is_teacher(family):
    cfg = tiny_detr_cfg(family)
    # the boxes as predicted: with the default clamp, an identical student still learns to cut
    # its boxes to the image (tests/models/test_detrdistill_teacher_boxes.py)
    model = _build(cfg, cfg, logits_kd=dict(clamp_teacher_boxes=False))
    model.student.load_state_dict(model.teacher.state_dict())
    model.eval()
    batch = make_batch(model)
    with torch.no_grad():
        losses = model(**batch, mode='loss')
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], batch['data_samples'], ())
    kd = {
        k: v.item()
        for k, v in losses.items()
        if k.startswith(('detrdistill.logits', 'detrdistill.feature'))
    }
    assert len(kd) == 2 * 3 + 2  # layers x (cls, L1, GIoU) + layers x feature
    assert max(abs(v) for v in kd.values()) < 1e-4, kd
    # the teacher-query group predicts what the teacher predicted: its loss under the
    # teacher's assignment is the teacher head's own loss on its own predictions
    gts = [s.gt_instances for s in batch['data_samples']]
    metas = [s.metainfo for s in batch['data_samples']]
    t_cls, t_box = t_out.group(OWN_GROUP)
    for layer in range(2):
        with torch.no_grad():
            own = model.teacher.bbox_head.loss_by_feat_single(
                t_cls[layer], t_box[layer], gts, metas
            )
        for name, value in zip(('loss_cls', 'loss_bbox', 'loss_iou'), own):
            got = losses[f'detrdistill.query_prior.d{layer}.{name}']
            torch.testing.assert_close(got, value, rtol=1e-4, atol=1e-5)


class _Recording:
    """Delegates to an assigner and keeps what it returned."""

    def __init__(self, assigner):
        self.assigner, self.results = assigner, []

    def assign(self, *args, **kwargs):
        result = self.assigner.assign(*args, **kwargs)
        self.results.append(result.gt_inds.clone())
        return result


@pytest.mark.parametrize('family', ['conditional', 'deformable-twostage'])
def test_query_prior_group_uses_the_teachers_assignment(family):
    student, teacher = tiny_detr_cfg(family), tiny_detr_cfg(family, num_queries=12)
    model = _build(student, teacher, seed=1, **_only('query_prior')).train()
    component = model.components['query_prior']
    component.assigner = recording = _Recording(component.assigner)
    batch = make_batch(model)
    model(**batch, mode='loss')
    # independently: a HungarianAssigner built from the teacher's config, on its predictions
    reference = TASK_UTILS.build(teacher.train_cfg.assigner)
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], batch['data_samples'], ())
    metas = [s.metainfo for s in batch['data_samples']]
    gts = [s.gt_instances for s in batch['data_samples']]
    expected = []
    for layer in range(2):  # the head assigns layer by layer, image by image
        t_cls, t_box = (x[layer] for x in t_out.group(OWN_GROUP))
        for preds, gt, meta in zip(pred_instances(t_cls, t_box, metas), gts, metas):
            expected.append(reference.assign(preds, gt, meta).gt_inds)
    assert len(recording.results) == len(expected) == 4
    for got, want in zip(recording.results, expected):
        assert torch.equal(got, want)
    assert all((r > 0).sum() == len(g) for r, g in zip(recording.results, gts * 2))


def test_teacher_assisted_assigner_needs_the_teacher_predictions():
    assigner = QueryPriorAssigner()
    with pytest.raises(KeyError, match='teacher_pred_instances'):
        assigner.assign(None, None, img_meta=dict(img_shape=(64, 64)))


def test_feature_kd_projects_a_narrower_student():
    student, teacher = tiny_detr_cfg('dab', embed_dims=32), tiny_detr_cfg('dab', embed_dims=64)
    model = _build(student, teacher, query_prior=None).train()
    proj = model.components['feature'].proj
    assert isinstance(proj, torch.nn.Conv2d) and (proj.in_channels, proj.out_channels) == (32, 64)
    _total(model(**make_batch(model), mode='loss')).backward()
    assert proj.weight.grad.abs().sum() > 0
    assert all(k.startswith('student.') for k in model.student.state_dict(prefix='student.'))


def test_query_prior_across_query_formats_is_refused_with_a_fix():
    student, teacher = tiny_detr_cfg('dab', embed_dims=32), tiny_detr_cfg('dab', embed_dims=64)
    with pytest.raises(ValueError, match='same query format.*Switch it off'):
        _build(student, teacher)


def test_feature_kd_across_neck_layouts_names_the_levels():
    model = _build(
        tiny_detr_cfg('conditional'),
        tiny_detr_cfg('deformable', embed_dims=256),
        logits_kd=None,
        query_prior=None,
    )
    with pytest.raises(ValueError, match='neck levels'):
        model(**make_batch(model), mode='loss')


def test_feature_mask_is_normalised_and_follows_the_queries():
    model = _build(tiny_detr_cfg('dab'), tiny_detr_cfg('dab'), **_only('feature'))
    component = model.components['feature']
    weights = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    feat = torch.zeros(2, 2, 3, 3)
    feat[:, 0, 0, 0] = 1.0  # location (0, 0) points along channel 0
    feat[:, 1, 2, 2] = 1.0  # location (2, 2) along channel 1
    mask = component.location_mask(weights, feat)
    assert mask.amax() == 1.0 and mask.amin() > 0
    assert mask[0, 0, 0] == 1.0 and mask[1, 2, 2] == 1.0
    assert mask[0, 2, 2] == pytest.approx(0.01) and mask[1, 0, 0] == pytest.approx(0.01)


def test_feature_quality_falls_back_to_scores_without_gt():
    model = _build(tiny_detr_cfg('dab'), tiny_detr_cfg('dab'), **_only('feature'))
    component = model.components['feature']
    component.topk = 1
    logits = torch.tensor([[[5.0, -5.0], [-5.0, -5.0]]])  # query 0, class 0 is the top pair
    boxes = torch.tensor([[[0.5, 0.5, 0.2, 0.2], [0.2, 0.2, 0.1, 0.1]]])
    embeds = torch.tensor([[[3.0, 4.0], [1.0, 0.0]]])
    metas = [dict(img_shape=(100, 100))]
    no_gt = component.query_weights(logits, boxes, embeds, [torch.zeros(0, 4)], metas)
    score = torch.sigmoid(torch.tensor(5.0))
    torch.testing.assert_close(no_gt, score * torch.tensor([[0.6, 0.8]]))
    half_iou = torch.tensor([[40.0, 40.0, 60.0, 50.0]])  # IoU 0.5 with query 0's box
    with_gt = component.query_weights(logits, boxes, embeds, [half_iou], metas)
    torch.testing.assert_close(with_gt, 0.5 * no_gt)


def test_components_switch_off_one_by_one():
    student, teacher = tiny_detr_cfg('deformable'), tiny_detr_cfg('deformable')
    for off in COMPONENTS:
        model = _build(student, teacher, **{ARGS[off]: None})
        losses = model(**make_batch(model), mode='loss')
        assert not any(k.startswith(f'detrdistill.{off}.') for k in losses)
        others = [c for c in COMPONENTS if c != off]
        assert all(any(k.startswith(f'detrdistill.{c}.') for k in losses) for c in others)


def test_unknown_component_arguments_name_the_key():
    cfg = tiny_detr_cfg('dab')
    with pytest.raises(TypeError, match='top_k'):
        _build(cfg, cfg, feature_kd=dict(top_k=10))
    with pytest.raises(KeyError, match='loss_klass'):
        _build(cfg, cfg, logits_kd=dict(losses=dict(loss_klass=None)))


def test_composes_with_d3etr_and_shares_the_teacher_query_group():
    cfg = tiny_detr_cfg('deformable')
    model = _build(
        cfg,
        cfg,
        method='ConfigurableDistiller',
        components=dict(
            adaptive=dict(type='AdaptiveMatchKD', prefix='d3etr.adaptive'),
            fixed=dict(type='FixedMatchKD', prefix='d3etr.fixed'),
            feature=dict(type='TargetAwareFeatureKD', prefix='detrdistill.feature'),
            query_prior=dict(type='QueryPriorAssignment', prefix='detrdistill.query_prior'),
        ),
    ).train()
    batch = make_batch(model)
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], batch['data_samples'], ())
    groups = model.extra_query_groups(t_out, batch['data_samples'])
    assert [g.name for g in groups] == [TEACHER_QUERY_GROUP]  # run once for both components
    losses = model(**batch, mode='loss')
    for prefix in (
        'd3etr.adaptive',
        'd3etr.fixed',
        'detrdistill.feature',
        'detrdistill.query_prior',
    ):
        assert any(k.startswith(prefix + '.d') for k in losses), prefix
    _total(losses).backward()


def test_a_component_key_becomes_its_prefix():
    cfg = tiny_detr_cfg('dab')
    model = _build(
        cfg,
        cfg,
        method='ConfigurableDistiller',
        components=dict(feat=dict(type='TargetAwareFeatureKD'), off=None),
    )
    assert list(model.components) == ['feat']
    assert any(k.startswith('feat.d1.') for k in model(**make_batch(model), mode='loss'))
