"""OD-DETR: the EMA teacher, teacher-guided assignment, initial-query and auxiliary groups."""

import itertools
import math

import pytest
import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmengine.structures import InstanceData

from mmdet_detrdistill.models.common import pred_instances
from mmdet_detrdistill.models.detectors import OWN_GROUP
from mmdet_detrdistill.models.task_modules import ODDETRGuidedAssigner, match_instability
from mmdet_detrdistill.testing import FAMILY_CONFIGS, make_batch, tiny_detr_cfg

FAMILIES = list(FAMILY_CONFIGS)


def _build(family='conditional', seed=0, **kwargs):
    torch.manual_seed(seed)
    model = MODELS.build(dict(type='ODDETRDistiller', student=tiny_detr_cfg(family), **kwargs))
    model.init_weights()
    return model.train()


def _total(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


def _sgd_step(model, lr=1e-2):
    with torch.no_grad():
        for p in model.student.parameters():
            if p.grad is not None:
                p.sub_(lr * p.grad)
    model.zero_grad()


@pytest.mark.parametrize('family', FAMILIES)
def test_step_trains_every_student_parameter_and_never_the_teacher(family):
    model = _build(family)
    losses = model(**make_batch(model), mode='loss')
    prefixes = ('oddetr.init_query.d1.', 'oddetr.aux.d1.')
    assert all(any(k.startswith(p) for k in losses) for p in prefixes)
    assert 0.0 <= losses['layer_match_instability'] <= 1.0
    assert all(torch.isfinite(v) for v in losses.values())
    _total(losses).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
    unused = [n for n, p in model.student.named_parameters() if p.requires_grad and p.grad is None]
    assert not unused  # DDP needs no find_unused_parameters
    assert not any(m.training for m in model.teacher.modules())


def test_ema_update_arithmetic():
    model = _build(ema=dict(type='ExpMomentumEMA', momentum=0.01, gamma=10))
    batch = make_batch(model)
    _total(model(**batch, mode='loss')).backward()  # first update: a copy of the student
    for (name, s), t in zip(model.student.named_parameters(), model.teacher.parameters()):
        assert torch.equal(s, t), name
    _sgd_step(model)
    before = [t.clone() for t in model.teacher.parameters()]
    student = [s.clone() for s in model.student.parameters()]
    model(**batch, mode='loss')  # second update, steps == 1
    m = (1 - 0.01) * math.exp(-(1 + 1) / 10) + 0.01
    for b, s, t in zip(before, student, model.teacher.parameters()):
        torch.testing.assert_close(t, (1 - m) * b + m * s)
    assert model.ema_teacher.steps.item() == 2


@pytest.fixture
def nan_filled_empty_tensors():
    """``torch.empty``/``torch.Tensor(n, d)`` give NaN instead of whatever memory held."""
    import torch.utils.deterministic as deterministic

    before = torch.are_deterministic_algorithms_enabled(), deterministic.fill_uninitialized_memory
    torch.use_deterministic_algorithms(True, warn_only=True)
    deterministic.fill_uninitialized_memory = True
    yield
    torch.use_deterministic_algorithms(before[0])
    deterministic.fill_uninitialized_memory = before[1]


@pytest.mark.parametrize('family', FAMILIES)
def test_initialised_teacher_is_the_initialised_student(family, nan_filled_empty_tensors):
    """Before the first EMA update the teacher is the student as ``init_weights`` left it,
    not the copy taken at construction (for Deformable DETR: NaN ``level_embed``)."""
    model = _build(family).eval()
    student, teacher = model.student.state_dict(), model.teacher.state_dict()
    assert student.keys() == teacher.keys()
    for key in student:
        assert torch.equal(student[key], teacher[key]), key
    assert model.ema_teacher.steps.item() == 0  # the first training step still copies
    with torch.no_grad():
        losses = model(**make_batch(model), mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())


def test_no_update_outside_training():
    model = _build()
    model.eval()
    with torch.no_grad():
        model(**make_batch(model), mode='loss')
    assert model.ema_teacher.steps.item() == 0


def test_teacher_is_in_the_checkpoint_and_comes_back():
    model = _build(ema=dict(type='ExpMomentumEMA', momentum=0.1, gamma=10))
    batch = make_batch(model)
    for _ in range(3):
        _total(model(**batch, mode='loss')).backward()
        _sgd_step(model)
    state = model.state_dict()
    assert any(k.startswith('ema_teacher.module.') for k in state) and 'ema_teacher.steps' in state
    restored = _build(seed=1, ema=dict(type='ExpMomentumEMA', momentum=0.1, gamma=10))
    restored.load_state_dict(state)
    for a, b in zip(model.teacher.state_dict().values(), restored.teacher.state_dict().values()):
        assert torch.equal(a, b)
    assert restored.teacher is restored.ema_teacher.module and restored.ema_teacher.steps == 3
    model.eval(), restored.eval()
    with torch.no_grad():
        t1 = model.teacher(**batch, mode='tensor')
        t2 = restored.teacher(**batch, mode='tensor')
    torch.testing.assert_close(t1, t2)


def _preds(n, num_classes=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 60
    boxes = torch.cat([xy, xy + 4 + torch.rand(n, 2, generator=g) * 30], dim=1)
    return InstanceData(scores=torch.randn(n, num_classes, generator=g), bboxes=boxes)


def _gts(n=4):
    return InstanceData(bboxes=_preds(n, seed=9).bboxes, labels=torch.tensor([0, 1, 2, 0])[:n])


HUNGARIAN = dict(
    type='HungarianAssigner',
    match_costs=[
        dict(type='FocalLossCost', weight=2.0),
        dict(type='BBoxL1Cost', weight=5.0, box_format='xywh'),
        dict(type='IoUCost', iou_mode='giou', weight=2.0),
    ],
)


@pytest.mark.parametrize('alpha, which', [(0.0, 'student'), (1.0, 'teacher')])
def test_guided_assignment_ends_are_the_student_and_the_teacher_matching(alpha, which):
    student, teacher, gts = _preds(10, seed=1), _preds(10, seed=2), _gts()
    meta = {'img_shape': (100, 100)}
    guided = ODDETRGuidedAssigner(HUNGARIAN['match_costs'], alpha=alpha)
    got = guided.assign(student, gts, img_meta=meta, teacher_pred_instances=teacher).gt_inds
    reference = TASK_UTILS.build(HUNGARIAN)
    want = reference.assign(dict(student=student, teacher=teacher)[which], gts, meta).gt_inds
    assert torch.equal(got, want)
    other = reference.assign(dict(student=teacher, teacher=student)[which], gts, meta).gt_inds
    assert not torch.equal(other, want)  # the two ends differ here: the test can fail


def test_guided_assignment_minimises_the_mixed_cost():
    student, teacher, gts = _preds(8, seed=3), _preds(8, seed=4), _gts(3)
    meta = {'img_shape': (100, 100)}
    guided = ODDETRGuidedAssigner(HUNGARIAN['match_costs'], alpha=0.3)
    gt_inds = guided.assign(student, gts, img_meta=meta, teacher_pred_instances=teacher).gt_inds
    cost = 0.7 * guided.cost(student, gts, meta) + 0.3 * guided.cost(teacher, gts, meta)
    matched = sum(cost[q, gt_inds[q] - 1] for q in range(8) if gt_inds[q] > 0)
    best = min(
        sum(cost[q, j] for j, q in enumerate(p)) for p in itertools.permutations(range(8), 3)
    )
    torch.testing.assert_close(matched, best)


def test_guided_assignment_without_gt_assigns_nothing():
    guided = ODDETRGuidedAssigner(HUNGARIAN['match_costs'])
    empty = InstanceData(bboxes=torch.zeros(0, 4), labels=torch.zeros(0, dtype=torch.long))
    result = guided.assign(_preds(5), empty, img_meta={'img_shape': (100, 100)})
    assert not result.gt_inds.any()


GUIDANCES = ['ODDETRMatchingDistillation', 'ODDETRGuidedAssignment']


@pytest.mark.parametrize('guidance', GUIDANCES)
def test_guided_assignment_needs_a_same_sized_teacher(guidance):
    student = tiny_detr_cfg('dab')
    with pytest.raises(ValueError, match='query i'):
        MODELS.build(
            dict(
                type='ConfigurableDistiller',
                student=student,
                teacher=tiny_detr_cfg('dab', num_queries=12),
                allow_untrained_teacher=True,
                components=dict(guided=dict(type=guidance)),
            )
        )


@pytest.mark.parametrize('family', ['conditional', 'deformable-twostage'])
def test_auxiliary_group_takes_the_two_least_cost_queries_per_gt(family):
    model = _build(family)
    batch = make_batch(model, num_items=(3, 1))
    model(**batch, mode='loss')  # EMA initialised from the student
    component = model.components['aux']
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], batch['data_samples'], ())
    metas = [s.metainfo for s in batch['data_samples']]
    gts = [s.gt_instances for s in batch['data_samples']]
    costs = model.teacher.bbox_head.assigner.match_costs
    for stage in range(t_out.num_layers):
        t_cls, t_box = (x[stage] for x in t_out.group(OWN_GROUP))
        idx, valid = component.least_cost_queries(t_cls, t_box, gts, metas)
        assert idx.shape == (2, 3 * 2) and valid.sum(1).tolist() == [6, 2]
        for b, (pred, gt, meta) in enumerate(zip(pred_instances(t_cls, t_box, metas), gts, metas)):
            for j in range(len(gt)):  # brute force: every query's cost to GT j, sorted
                one = gt[j : j + 1]
                per_query = [
                    sum(
                        float(c(pred_instances=pred[q : q + 1], gt_instances=one, img_meta=meta))
                        for c in costs
                    )
                    for q in range(len(pred))
                ]
                want = sorted(range(len(pred)), key=per_query.__getitem__)[:2]
                assert idx[b, 2 * j : 2 * j + 2].tolist() == want, (stage, b, j)


def test_auxiliary_padding_slots_are_invisible():
    """Images with fewer GT boxes get padding slots that no real query sees."""
    model = _build('dab').eval()
    batch = make_batch(model, num_items=(3, 1))
    model.train()
    model(**batch, mode='loss')
    model.eval()
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], batch['data_samples'], ())
        groups = model.components['aux'].query_groups(t_out, batch['data_samples'])
        assert not groups[0].valid[1, 2:].any()
        out1 = model.decoder_outputs(model.student, batch['inputs'], batch['data_samples'], groups)
        for g in groups:  # scribble over image 1's padding slots
            g.query[1, 2:] = torch.randn_like(g.query[1, 2:]) * 10
        out2 = model.decoder_outputs(model.student, batch['inputs'], batch['data_samples'], groups)
    for name in out1.slices:
        real = slice(None, 2) if name.startswith('aux') else slice(None)
        torch.testing.assert_close(
            out1.group(name)[0][:, 1, real], out2.group(name)[0][:, 1, real], atol=1e-5, rtol=1e-5
        )
    padded = out1.group('aux0')[0][:, 1, 2:], out2.group('aux0')[0][:, 1, 2:]
    assert not torch.allclose(*padded, atol=1e-3)  # the padding itself did change


def test_auxiliary_groups_carry_their_targets_and_the_component_keeps_no_step_state():
    """Each slot's GT travels with its group (-1 for padding); the loss reads them from the
    student's outputs, and a step leaves the component's attributes as they were."""
    model = _build('dab')
    batch = make_batch(model, num_items=(3, 1))
    component = model.components['aux']
    before = dict(vars(component))
    model(**batch, mode='loss')
    assert vars(component).keys() == before.keys()
    assert [k for k, v in before.items() if vars(component)[k] is not v] == []
    samples = batch['data_samples']
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, batch['inputs'], samples, ())
        groups = component.query_groups(t_out, samples)
        s_out = model.decoder_outputs(model.student, batch['inputs'], samples, groups)
    assert [g.name for g in groups] == component.group_names(t_out) == ['aux0', 'aux1']
    for group in groups:
        assert group.targets.tolist() == [[0, 0, 1, 1, 2, 2], [0, 0, -1, -1, -1, -1]]
        assert torch.equal(group.valid, group.targets >= 0)
        assert s_out.groups[group.name] is group
    losses = component.loss(s_out, t_out, samples)
    groups[0].targets[0, :2] = 2  # slots of GT 0 now trained on GT 2
    changed = component.loss(s_out, t_out, samples)
    assert not torch.equal(losses['oddetr.aux.d0.loss_bbox'], changed['oddetr.aux.d0.loss_bbox'])


def test_batch_without_gt_still_logs_aux_losses_as_zero():
    model = _build('deformable')
    losses = model(**make_batch(model, num_items=(0, 0)), mode='loss')
    assert losses['oddetr.aux.d1.loss_cls'] == 0 and losses['layer_match_instability'] == 0
    assert all(torch.isfinite(v) for v in losses.values())
    _total(losses).backward()


def test_components_switch_off():
    model = _build('dab', guided_assignment=None, init_query=None, aux_groups=None)
    assert len(model.components) == 0
    losses = model(**make_batch(model), mode='loss')
    assert not any(k.startswith('oddetr.') for k in losses)


def test_match_instability_counts_changed_matches():
    # 2 layers x 1 image, 3 GT: GT 0 keeps query 4, GT 1 moves 2 -> 3, GT 2 keeps query 0
    layer0 = torch.tensor([3, 0, 2, 0, 1])
    layer1 = torch.tensor([3, 0, 0, 2, 1])
    assert match_instability([(3, layer0), (3, layer1)], 2, 1).item() == pytest.approx(1 / 3)
    assert match_instability([(0, torch.zeros(5, dtype=torch.long))] * 2, 2, 1).item() == 0


def _two_stage_pair_differing_in_proposal_choice():
    """A two-stage OD-DETR whose EMA teacher equals the student except for the encoder's
    proposal classifier, which only chooses the top-k proposals: the two models decode
    any one proposal alike, but each picks its own."""
    torch.manual_seed(0)
    student = tiny_detr_cfg('deformable-twostage', dropout=0.0)
    ema = dict(type='ExpMomentumEMA', momentum=1e-4, gamma=1e-3)  # the teacher barely moves
    model = MODELS.build(dict(type='ODDETRDistiller', student=student, ema=ema))
    model.init_weights()
    model.train().update_teacher()  # the first update copies the student
    scorer = model.student.bbox_head.cls_branches[model.student.decoder.num_layers]
    with torch.no_grad():
        for p in scorer.parameters():
            p.copy_(torch.randn_like(p))
    return model


def _spy(monkeypatch, obj, name, seen, *keys):
    """Record the positional arguments of ``obj.name`` under ``keys``, and the keyword
    arguments under their names."""
    original = getattr(obj, name)

    def spy(*args, **kwargs):
        seen.update(zip(keys, args))
        seen.update(kwargs)
        return original(*args, **kwargs)

    monkeypatch.setattr(obj, name, spy)


def test_two_stage_guidance_is_the_teacher_on_the_students_own_proposals(monkeypatch):
    """Two-stage: student query i is the student's own i-th encoder proposal. The teacher
    outputs that guide its assignment must be for that same proposal: here (models equal
    but for which proposals they pick) they are the student's own outputs, query by query.
    The initial-query group pairs teacher query i with the teacher's outputs for it."""
    model = _two_stage_pair_differing_in_proposal_choice()
    seen = {}
    _spy(monkeypatch, model, 'student_gt_loss', seen, 'student', 'samples', 'teacher')
    _spy(monkeypatch, model.components['guided'], 'gt_decoder_loss', seen, 'teacher_out')
    model(**make_batch(model), mode='loss')
    student, teacher = seen['student'], seen['teacher']
    guide = seen['teacher_on_student_queries']  # the second teacher pass, by its name
    assert seen['teacher_out'] is teacher  # the teacher's own outputs, not swapped
    # the test can fail: each model picked other proposals than the other
    assert not torch.allclose(student.own_queries.reference, teacher.own_queries.reference)
    assert torch.equal(guide.own_queries.reference, student.own_queries.reference)
    for got, want in zip(guide.group(OWN_GROUP), student.group(OWN_GROUP)):
        torch.testing.assert_close(got[-1], want[-1], atol=1e-4, rtol=1e-4)
    init_query = student.group('teacher_queries')  # the teacher's queries in the student
    for got, want in zip(init_query, teacher.group(OWN_GROUP)):
        torch.testing.assert_close(got, want, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('guidance', GUIDANCES)
def test_two_stage_guidance_without_the_students_proposals_is_refused(guidance):
    """An external teacher decodes its own proposals: guiding a two-stage student with them
    would mix unrelated queries, so the first step stops with what to use instead."""
    model = MODELS.build(
        dict(
            type='ConfigurableDistiller',
            student=tiny_detr_cfg('deformable-twostage'),
            teacher=tiny_detr_cfg('deformable-twostage'),
            allow_untrained_teacher=True,
            components=dict(guided=dict(type=guidance)),
        )
    )
    model.init_weights()
    with pytest.raises(
        ValueError, match=r'ODDETRDistiller.*as_two_stage=False.*components\.guided'
    ):
        model.train()(**make_batch(model), mode='loss')
