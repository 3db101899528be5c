"""InitialQueryKD: OD-DETR's initial-query constraint, boxes weighted by teacher confidence."""

import dataclasses

import pytest
import torch
from component_pairs import loss_with_pairs
from mmdet.registry import MODELS

from mmdet_detrdistill.models.common import (
    OWN_GROUP,
    TEACHER_QUERY_GROUP,
    DecoderOutputs,
    QueryGroup,
    gather_queries,
)
from mmdet_detrdistill.models.components import FixedMatchKD, InitialQueryKD
from mmdet_detrdistill.models.components.fixed_match_kd import teacher_query_group
from mmdet_detrdistill.models.components.initial_query_kd import (
    most_confident,
    teacher_confidence,
)
from mmdet_detrdistill.testing import make_batch, tiny_detr_cfg, tiny_dino_cfg

L, BS, N, C = 2, 2, 4, 3
METAS = [dict(img_shape=(64, 64)), dict(img_shape=(64, 48))]


def _samples():
    """Data samples as the component reads them (``metainfo`` only)."""
    return [type('Sample', (), dict(metainfo=m))() for m in METAS]


def _boxes(*shape):
    """Normalised cxcywh boxes well inside the image."""
    centre = 0.3 + 0.4 * torch.rand(*shape, 2)
    size = 0.1 + 0.3 * torch.rand(*shape, 2)
    return torch.cat([centre, size], -1)


def _outputs(cls, box, group):
    return DecoderOutputs(cls, box, {group: slice(0, N)}, own_queries=None)


def _pair(student_box=None, teacher_cls=None, teacher_box=None):
    """Student outputs (group ``teacher_queries``) and teacher outputs, (L, BS, N, .)."""
    t_cls = torch.randn(L, BS, N, C) if teacher_cls is None else teacher_cls
    t_box = _boxes(L, BS, N) if teacher_box is None else teacher_box
    s_box = _boxes(L, BS, N) if student_box is None else student_box
    s_cls = torch.randn(L, BS, N, C)
    return _outputs(s_cls, s_box, TEACHER_QUERY_GROUP), _outputs(t_cls, t_box, OWN_GROUP)


def _box_loss(component, student, teacher):
    losses = loss_with_pairs(component, student, teacher, _samples())
    return sum(v for k, v in losses.items() if k.endswith(('loss_bbox', 'loss_iou')))


def test_teacher_confidence_is_the_max_score_zero_below_the_threshold():
    logits = torch.tensor([[0.0, 2.0, -1.0], [-3.0, -2.0, -4.0]])
    conf = teacher_confidence(logits)
    torch.testing.assert_close(conf, torch.sigmoid(torch.tensor([2.0, -2.0])))
    assert teacher_confidence(logits, score_thr=0.5).tolist() == [conf[0].item(), 0.0]


def test_a_query_the_teacher_is_not_confident_about_contributes_nothing():
    component = InitialQueryKD(score_thr=0.3)
    t_cls = torch.randn(L, BS, N, C)
    t_cls[:, :, 1] = float('-inf')  # confidence 0
    t_cls[:, :, 2] = -2.0  # confidence 0.12, under the threshold
    t_cls[:, :, 0] = 3.0
    student, teacher = _pair(teacher_cls=t_cls)
    student.bbox_preds.requires_grad_(True)
    loss = _box_loss(component, student, teacher)
    loss.backward()
    grad = student.bbox_preds.grad
    assert (grad[:, :, 1:3] == 0).all() and (grad[:, :, 0] != 0).any()
    with torch.no_grad():  # moving those queries' boxes changes nothing
        student.bbox_preds[:, :, 1:3] = _boxes(L, BS, 2)
    assert _box_loss(component, student, teacher).item() == pytest.approx(loss.item())


def test_identical_teacher_and_student_give_zero_loss():
    component = InitialQueryKD()
    t_cls, t_box = torch.randn(L, BS, N, C), _boxes(L, BS, N)
    student = _outputs(t_cls.clone(), t_box.clone(), TEACHER_QUERY_GROUP)
    losses = loss_with_pairs(component, student, _outputs(t_cls, t_box, OWN_GROUP), _samples())
    assert {k.rsplit('.', 1)[1] for k in losses} == {'loss_cls', 'loss_bbox', 'loss_iou'}
    assert all(v.abs().item() < 1e-5 for v in losses.values()), losses


def test_gradients_reach_the_student_only():
    student, teacher = _pair()
    for x in (student.cls_scores, student.bbox_preds, teacher.cls_scores, teacher.bbox_preds):
        x.requires_grad_(True)
    losses = loss_with_pairs(InitialQueryKD(), student, teacher, _samples())
    sum(losses.values()).backward()
    assert student.cls_scores.grad.abs().sum() > 0 and student.bbox_preds.grad.abs().sum() > 0
    assert teacher.cls_scores.grad is None and teacher.bbox_preds.grad is None


def test_uniform_weighting_is_fixed_matchings_box_loss():
    """``box_weighting='uniform'`` computes what FixedMatchKD's pair losses computed."""
    losses = dict(
        loss_bbox=dict(type='L1Loss', loss_weight=5.0),
        loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        loss_self_attn=None,
        loss_cross_attn=None,
    )
    student, teacher = _pair()
    ours_kd = InitialQueryKD(losses=losses, box_weighting='uniform')
    ours = loss_with_pairs(ours_kd, student, teacher, _samples())
    fixed = FixedMatchKD(prefix='oddetr.init_query', losses=losses)
    expected = loss_with_pairs(fixed, student, teacher, _samples())
    assert ours.keys() == expected.keys()
    for key, value in expected.items():
        torch.testing.assert_close(ours[key], value)


def test_confidence_weighting_scales_each_pair_by_its_confidence():
    losses = dict(loss_cls=None, loss_iou=None)
    student, teacher = _pair()
    uniform = InitialQueryKD(losses=losses, box_weighting='uniform')
    weighted = InitialQueryKD(losses=losses)
    conf = teacher_confidence(teacher.cls_scores)  # (L, BS, N)
    s_box, t_box = student.bbox_preds, teacher.bbox_preds
    for layer in range(L):
        key = f'oddetr.init_query.d{layer}.loss_bbox'
        l1 = (s_box[layer] - t_box[layer]).abs().sum(-1)  # (BS, N)
        expected = (conf[layer] * l1).sum() / (BS * N)
        got = loss_with_pairs(weighted, student, teacher, _samples())[key]
        torch.testing.assert_close(got, expected)
        assert loss_with_pairs(uniform, student, teacher, _samples())[key] > got


def test_unknown_weighting_names_the_key():
    with pytest.raises(ValueError, match='box_weighting.*teacher_confidence'):
        InitialQueryKD(box_weighting='confidence')


@pytest.mark.parametrize('family', ['conditional', 'deformable'])
def test_oddetr_default_constrains_boxes_and_class_only_switches_them_off(family):
    """The default init-query constraint has finite box terms (teacher-confidence weighted);
    ``losses=dict(loss_bbox=None, loss_iou=None)`` leaves the class scores only."""
    torch.manual_seed(0)
    default = MODELS.build(dict(type='ODDETRDistiller', student=tiny_detr_cfg(family)))
    assert isinstance(default.components['init_query'], InitialQueryKD)
    assert default.components['init_query'].box_weighting == 'teacher_confidence'
    class_only = MODELS.build(
        dict(
            type='ODDETRDistiller',
            student=tiny_detr_cfg(family),
            init_query=dict(losses=dict(loss_bbox=None, loss_iou=None)),
        )
    )
    for model in (default, class_only):
        model.init_weights()
        model.train()
    keys = set(class_only(**make_batch(class_only), mode='loss'))
    assert not any(k.startswith('oddetr.init_query.') and 'loss_bbox' in k for k in keys)
    assert 'oddetr.init_query.d1.loss_cls' in keys
    losses = default(**make_batch(default), mode='loss')
    box_keys = [k for k in losses if k.startswith('oddetr.init_query.') and 'box' in k]
    assert box_keys and all(torch.isfinite(losses[k]) for k in box_keys)
    assert {'oddetr.init_query.d1.loss_bbox', 'oddetr.init_query.d1.loss_iou'} <= set(losses)


# --- num_queries: the teacher's K most confident initial queries only (a cheaper variant) ---


def _kept_group_outputs(t_cls, t_box, kept):
    """Student outputs of a group that keeps teacher queries ``kept`` (bs, K) and predicts
    exactly what the teacher predicts for them."""
    own = QueryGroup(OWN_GROUP, torch.randn(BS, N, 8), reference=torch.rand(BS, N, 4))
    group = dataclasses.replace(own, name=TEACHER_QUERY_GROUP).take(kept)
    s_cls = torch.stack([gather_queries(x, kept) for x in t_cls])
    s_box = torch.stack([gather_queries(x, kept) for x in t_box])
    slices = {TEACHER_QUERY_GROUP: slice(0, kept.shape[1])}
    return DecoderOutputs(s_cls, s_box, slices, None, groups={TEACHER_QUERY_GROUP: group})


def test_most_confident_keeps_the_top_k_per_image_in_query_order():
    logits = torch.tensor([[[0.0], [3.0], [-1.0], [2.0]], [[5.0], [-2.0], [4.0], [0.0]]])
    assert most_confident(logits, 2).tolist() == [[1, 3], [0, 2]]


def test_take_gathers_every_field_and_composes_the_teacher_index():
    group = QueryGroup('g', torch.randn(2, 5, 3), query_pos=torch.randn(2, 5, 3))
    first = group.take(torch.tensor([[4, 1, 0], [2, 3, 4]]))
    torch.testing.assert_close(first.query[1], group.query[1, [2, 3, 4]])
    torch.testing.assert_close(first.query_pos[0], group.query_pos[0, [4, 1, 0]])
    assert first.reference is None and first.name == 'g'
    second = first.take(torch.tensor([[1, 2], [0, 0]]))
    assert second.teacher_index.tolist() == [[1, 0], [2, 2]]


def test_kept_queries_are_paired_with_the_teacher_queries_they_are():
    """A kept group predicting what the teacher predicts for those queries gives zero loss,
    whatever the teacher predicts for the queries left out (pairing query k with teacher
    query k would not)."""
    t_cls, t_box = torch.randn(L, BS, N, C), _boxes(L, BS, N)
    kept = torch.tensor([[1, 3], [0, 2]])
    student = _kept_group_outputs(t_cls, t_box, kept)
    teacher = _outputs(t_cls, t_box, OWN_GROUP)
    losses = loss_with_pairs(InitialQueryKD(num_queries=2), student, teacher, _samples())
    assert losses and all(v.abs().item() < 1e-5 for v in losses.values()), losses
    student.groups[TEACHER_QUERY_GROUP].teacher_index = torch.arange(2).expand(BS, -1)  # k: k
    wrong = loss_with_pairs(InitialQueryKD(num_queries=2), student, teacher, _samples())
    assert sum(wrong.values()).item() > 1e-2


@pytest.mark.parametrize('value', [0, -3, 2.5, True, '300'])
def test_num_queries_must_be_a_positive_int(value):
    with pytest.raises(ValueError, match='model.init_query.num_queries'):
        InitialQueryKD(num_queries=value)


@pytest.mark.parametrize('family', ['conditional', 'deformable', 'dino'])
def test_oddetr_keeps_the_emas_most_confident_initial_queries(family):
    """``init_query.num_queries=K``: the group is the EMA's K most confident initial queries
    of each image (as the full group would have them), and the distiller trains with it."""
    torch.manual_seed(0)
    student = tiny_dino_cfg() if family == 'dino' else tiny_detr_cfg(family)
    model = MODELS.build(
        dict(type='ODDETRDistiller', student=student, init_query=dict(num_queries=3))
    )
    model.init_weights()
    batch = make_batch(model, image_shapes=((3, 96, 96), (3, 96, 80)))
    with torch.no_grad():
        args = (batch['inputs'], batch['data_samples'], ())
        t_out = model.decoder_outputs(model.teacher, *args)
    (group,) = model.components['init_query'].query_groups(t_out, batch['data_samples'])
    full = teacher_query_group(t_out, model.student)
    kept = most_confident(t_out.group(OWN_GROUP)[0][-1], 3)
    assert group.num_queries == 3 and torch.equal(group.teacher_index, kept)
    torch.testing.assert_close(group.query, gather_queries(full.query, kept))
    losses = model.train()(**batch, mode='loss')
    assert 'oddetr.init_query.d1.loss_bbox' in losses
    total = sum(v for k, v in losses.items() if 'loss' in k)
    assert torch.isfinite(total)
    total.backward()
