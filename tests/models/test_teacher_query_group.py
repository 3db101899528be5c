"""The teacher's queries in the student's decoder are made the student's way (issue #32, item 5):
what the student's family derives from its query parameters before the decoder (one-stage
Deformable DETR's reference points) is derived by the student's own layers, which then learn
from the group (DETRDistill's query prior, D3ETR's fixed matching: one shared group)."""

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.common import TEACHER_QUERY_GROUP
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg

DETRDISTILL_QUERY_PRIOR_ONLY = dict(logits_kd=None, feature_kd=None, contrastive=None)
D3ETR_FIXED_ONLY = dict(matcher=dict(type='MixMatcher', adaptive=False, fixed=True))
GROUP_COMPONENTS = [
    ('DETRDistillDistiller', DETRDISTILL_QUERY_PRIOR_ONLY, 'detrdistill.query_prior.'),
    ('D3ETRDistiller', D3ETR_FIXED_ONLY, 'd3etr.fixed.'),
]
# the layer of each family that makes reference points (or positional queries) from a query
REFERENCE_LAYERS = {
    'deformable': 'reference_points_fc',
    'deformable-refine': 'reference_points_fc',
    'conditional': 'decoder.ref_point_head',  # in the decoder: the student's anyway
    'dab': 'decoder.ref_point_head',
}


def _build(family, method, kwargs, seed=0):
    torch.manual_seed(seed)
    student = tiny_detr_cfg(family, dropout=0.0)
    teacher = tiny_detr_cfg(family, num_queries=12, dropout=0.0)
    model = MODELS.build(distiller_cfg(student, teacher, method=method, **kwargs))
    model.init_weights()
    return model.train()


def _teacher_group(model, batch):
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], batch['data_samples'], ())
    (group,) = model.extra_query_groups(t_out, batch['data_samples'])
    return t_out, group


@pytest.mark.parametrize('family', list(REFERENCE_LAYERS))
@pytest.mark.parametrize('method, kwargs, prefix', GROUP_COMPONENTS)
def test_the_group_trains_the_students_reference_layer(family, method, kwargs, prefix):
    model = _build(family, method, kwargs)
    losses = model(**make_batch(model), mode='loss')
    group_loss = sum(v for k, v in losses.items() if k.startswith(prefix))
    group_loss.backward()  # the group's losses alone
    layer = model.student.get_submodule(REFERENCE_LAYERS[family])
    grads = [p.grad for p in layer.parameters()]
    assert all(g is not None and g.abs().sum() > 0 for g in grads), family


@pytest.mark.parametrize('family', ['deformable', 'deformable-refine'])
def test_one_stage_deformable_reference_points_come_from_the_students_layer(family):
    model = _build(family, *GROUP_COMPONENTS[0][:2])
    batch = make_batch(model)
    t_out, group = _teacher_group(model, batch)
    assert group.name == TEACHER_QUERY_GROUP
    assert group.query is t_out.own_queries.query  # the teacher's query parameters
    assert group.query_pos is t_out.own_queries.query_pos
    expected = model.student.reference_points_fc(t_out.own_queries.query_pos).sigmoid()
    torch.testing.assert_close(group.reference, expected)
    assert not torch.allclose(group.reference, t_out.own_queries.reference)  # not the teacher's


@pytest.mark.parametrize('family', ['conditional', 'dab', 'deformable-twostage'])
def test_other_families_take_the_teachers_queries_as_they_are(family):
    """Conditional DETR and DAB-DETR derive nothing before the decoder; two-stage Deformable
    DETR's reference boxes are the teacher's encoder proposals."""
    model = _build(family, *GROUP_COMPONENTS[0][:2])
    t_out, group = _teacher_group(model, make_batch(model))
    for field in ('query', 'query_pos', 'reference'):
        assert getattr(group, field) is getattr(t_out.own_queries, field), field


def test_d3etr_and_detrdistill_share_the_one_group_made_the_students_way():
    model = _build(
        'deformable',
        'ConfigurableDistiller',
        dict(
            components=dict(
                fixed=dict(type='FixedMatchKD', prefix='d3etr.fixed'),
                query_prior=dict(type='QueryPriorAssignment', prefix='detrdistill.query_prior'),
            )
        ),
    )
    batch = make_batch(model)
    t_out, group = _teacher_group(model, batch)
    expected = model.student.reference_points_fc(t_out.own_queries.query_pos).sigmoid()
    torch.testing.assert_close(group.reference, expected)


def test_the_teachers_reference_points_stay_available_for_the_ablation():
    """``reference_points='teacher'`` (before 2026-12-07): the teacher's points as they are,
    and the student's reference layer learns nothing from the group."""
    prior = dict(query_prior=dict(reference_points='teacher'))
    model = _build('deformable', 'DETRDistillDistiller', {**DETRDISTILL_QUERY_PRIOR_ONLY, **prior})
    batch = make_batch(model)
    t_out, group = _teacher_group(model, batch)
    assert group.reference is t_out.own_queries.reference
    losses = model(**batch, mode='loss')
    sum(v for k, v in losses.items() if k.startswith('detrdistill.query_prior.')).backward()
    grads = [p.grad for p in model.student.reference_points_fc.parameters()]
    assert all(g is None or not g.any() for g in grads)  # reached through concatenation: 0
    with pytest.raises(ValueError, match='reference_points'):
        _build('deformable', 'DETRDistillDistiller', dict(query_prior=dict(reference_points='x')))


def test_two_components_that_make_the_group_differently_are_refused():
    components = dict(
        fixed=dict(type='FixedMatchKD', prefix='d3etr.fixed'),
        query_prior=dict(
            type='QueryPriorAssignment',
            prefix='detrdistill.query_prior',
            reference_points='teacher',
        ),
    )
    model = _build('deformable', 'ConfigurableDistiller', dict(components=components))
    with pytest.raises(ValueError, match="query groups named 'teacher_queries'.*reference_points"):
        _teacher_group(model, make_batch(model))
