"""DETRDistill's contrastive term (the official code's ``cl_head``) as a component."""

import math
import os

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from mmdet_detrdistill.models.losses import InfoNCEDistillLoss
from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg
from mmdet_detrdistill.utils.export import export_student

PREFIX = 'detrdistill.contrastive'
OTHERS_OFF = dict(logits_kd=None, feature_kd=None, query_prior=None)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
HEADLINE = os.path.join(
    ROOT,
    'configs/detrdistill/detrdistill_deformable-detr-r101_deformable-detr-r50_16xb2-50e_coco.py',
)


def _build(family='deformable', seed=0, student=None, teacher=None, **kwargs):
    torch.manual_seed(seed)
    student = student or tiny_detr_cfg(family)
    teacher = teacher or tiny_detr_cfg(family, num_queries=12)
    model = MODELS.build(distiller_cfg(student, teacher, method='DETRDistillDistiller', **kwargs))
    model.init_weights()
    return model.train()


def _contrastive(losses):
    return {k: v for k, v in losses.items() if k.startswith(PREFIX)}


def _unit_rows(*shape, seed=0):
    return torch.nn.functional.normalize(
        torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1
    )


def test_info_nce_is_near_zero_for_aligned_pairs_log_k_without_information_high_for_shuffled():
    loss = InfoNCEDistillLoss(temperature=0.07)
    x = _unit_rows(2, 16, 32)
    aligned = loss(x, x)
    shuffled = loss(x[:, torch.randperm(16)], x)
    constant = loss(torch.ones(2, 16, 32), torch.ones(2, 16, 32))
    assert aligned < 0.05
    assert shuffled > math.log(16)
    torch.testing.assert_close(constant, torch.tensor(math.log(16)))


def test_info_nce_negatives_stay_within_their_group():
    """Per-group rows: a batch of groups is the mean of the groups alone."""
    loss = InfoNCEDistillLoss(temperature=0.5, loss_weight=0.2)
    s, t = _unit_rows(3, 8, 16, seed=1), _unit_rows(3, 8, 16, seed=2)
    alone = torch.stack([loss(s[g : g + 1], t[g : g + 1]) for g in range(3)]).mean()
    torch.testing.assert_close(loss(s, t), alone)
    assert not torch.allclose(loss(s.flatten(0, 1)[None], t.flatten(0, 1)[None]), alone)


def test_gradients_reach_the_student_and_both_heads_never_the_teacher():
    model = _build(**OTHERS_OFF)
    losses = _contrastive(model(**make_batch(model), mode='loss'))
    assert set(losses) == {f'{PREFIX}.d0.loss_contrastive', f'{PREFIX}.d1.loss_contrastive'}
    assert all(torch.isfinite(v) and v > 0 for v in losses.values())
    sum(losses.values()).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    heads = model.components['contrastive']
    for name, p in heads.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    decoder = [p.grad for p in model.student.decoder.parameters() if p.grad is not None]
    assert decoder and any(g.abs().sum() > 0 for g in decoder)


@pytest.mark.parametrize('negatives', ['image', 'batch'])
def test_loss_falls_as_matched_student_embeddings_align(negatives):
    model = _build(**OTHERS_OFF, contrastive=dict(negatives=negatives))
    component = model.components['contrastive']
    teacher = torch.randn(2, 12, component.teacher_proj.proj.in_features)
    student = torch.randn(2, 12, component.student_proj.proj.in_features, requires_grad=True)
    optim = torch.optim.Adam([student, *component.parameters()], lr=1e-2)
    history = []
    for _ in range(40):
        loss = component.embedding_loss(student, teacher)
        history.append(loss.item())
        optim.zero_grad()
        loss.backward()
        optim.step()
    assert history[-1] < 0.1 * history[0]


def test_image_negatives_give_the_mean_of_per_image_gradients_even_for_near_equal_rows():
    """What DDP parity needs: a batch's gradients are the mean of its images' (exactly in
    theory; in fp32 too, although an untrained decoder's rows differ by ~1%)."""
    component = _build(**OTHERS_OFF).components['contrastive']
    common = torch.randn(1, 1, component.student_proj.proj.in_features)
    student = common + 0.01 * torch.randn(2, 12, common.shape[-1])
    teacher = common + 0.01 * torch.randn(2, 12, common.shape[-1])

    def grads(s, t):
        component.zero_grad()
        component.embedding_loss(s, t).backward()
        return {n: p.grad.clone() for n, p in component.named_parameters()}

    batch = grads(student, teacher)
    first, second = grads(student[:1], teacher[:1]), grads(student[1:], teacher[1:])
    scale = max(g.abs().max() for g in batch.values())
    for name, g in batch.items():
        error = (g - (first[name] + second[name]) / 2).abs().max() / scale
        assert error < 1e-5, (name, error)


@pytest.mark.parametrize('family', ['conditional', 'dab', 'deformable'])
def test_student_equal_to_teacher_pairs_each_query_with_itself(family):
    """Identical models and heads: the matching pairs query i with query i, so the
    loss is far below its uninformative value log K; wrong pairs would lift it."""
    cfg = tiny_detr_cfg(family, dropout=0.0)
    model = _build(
        student=cfg,
        teacher=cfg,
        **OTHERS_OFF,
        contrastive=dict(loss=dict(type='InfoNCEDistillLoss', temperature=0.07, loss_weight=1.0)),
    )
    model.student.load_state_dict(model.teacher.state_dict())
    component = model.components['contrastive']
    component.teacher_proj.load_state_dict(component.student_proj.state_dict())
    batch = make_batch(model)
    with torch.no_grad():
        same = _contrastive(model(**batch, mode='loss'))
        component.teacher_proj.proj.weight.copy_(
            torch.randn_like(component.teacher_proj.proj.weight)
        )
        other = _contrastive(model(**batch, mode='loss'))
    log_k = math.log(cfg.num_queries)
    for key, value in same.items():
        assert value < 0.25 * log_k, (key, value)
        assert other[key] > 2 * value, (key, other[key])


def test_switch_off_leaves_no_key_and_no_parameters():
    on = _build()
    off = _build(contrastive=None)
    batch = make_batch(on)
    assert _contrastive(on(**batch, mode='loss'))
    assert not _contrastive(off(**batch, mode='loss'))
    assert any(k.startswith('components.contrastive.') for k in on.state_dict())
    assert not any('contrastive' in k for k in off.state_dict())


def test_exported_student_holds_no_contrastive_parameters(tmp_path):
    model = _build()
    state = model.state_dict()
    assert any(k.startswith('components.contrastive.student_proj.') for k in state)
    torch.save(dict(meta=dict(), state_dict=state), tmp_path / 'distill.pth')
    out, _ = export_student(str(tmp_path / 'distill.pth'), str(tmp_path / 'student.pth'))
    exported = torch.load(out, weights_only=True)['state_dict']
    assert set(exported) == set(model.student.state_dict())
    assert not any('contrastive' in k or '_proj.fc' in k for k in exported)


def test_pairs_follow_the_logits_distillation_matcher():
    only_l1 = dict(
        type='MixMatcher',
        adaptive=True,
        fixed=False,
        match_costs=[dict(type='BBoxL1Cost', weight=5.0, box_format='xywh')],
    )
    model = _build(logits_kd=dict(matcher=only_l1))
    assert len(model.components['contrastive'].matcher.match_costs) == 1
    own = dict(
        only_l1, match_costs=[dict(type='IoUCost', iou_mode='giou'), dict(type='BBoxL1Cost')]
    )
    model = _build(logits_kd=dict(matcher=only_l1), contrastive=dict(matcher=own))
    assert len(model.components['contrastive'].matcher.match_costs) == 2


def test_logits_and_contrastive_terms_solve_one_matching_per_step(monkeypatch):
    """Same matcher: one solve for both terms; a matcher config of its own (here one that finds
    the same pairs) solves again; the losses are the same either way."""
    solves = []
    solve = MixMatcher.adaptive_match_layers
    monkeypatch.setattr(
        MixMatcher,
        'adaptive_match_layers',
        lambda self, *args: solves.append(self) or solve(self, *args),
    )
    losses = {}
    own_matcher = dict(type='MixMatcher', adaptive=True, fixed=False, solver_threads=1)
    for name, contrastive in [('shared', dict()), ('own', dict(matcher=own_matcher))]:
        model = _build(feature_kd=None, query_prior=None, contrastive=contrastive)
        solves.clear()
        losses[name] = model(**make_batch(model), mode='loss')
        assert len({id(m) for m in solves}) == len(solves) == (1 if name == 'shared' else 2)
        assert any(k.startswith('detrdistill.logits') for k in losses[name])
        assert any(k.startswith(PREFIX) for k in losses[name])
    torch.testing.assert_close(losses['shared'], losses['own'])


def test_student_narrower_than_teacher_and_unknown_negatives():
    model = _build(
        student=tiny_detr_cfg('dab', embed_dims=32),
        teacher=tiny_detr_cfg('dab', embed_dims=64),
        query_prior=None,
    )
    losses = _contrastive(model(**make_batch(model), mode='loss'))
    assert len(losses) == 2 and all(torch.isfinite(v) for v in losses.values())
    with pytest.raises(ValueError, match="negatives='queue'"):
        _build(contrastive=dict(negatives='queue'))


def test_headline_config_trains_the_official_contrastive_head():
    cfg = Config.fromfile(HEADLINE).model.contrastive
    assert cfg.type == 'ContrastiveEmbeddingKD' and cfg.embed_dims == 512
    assert cfg.negatives == 'batch'  # the official code's: all queries of a GPU's images
    assert (cfg.loss.temperature, cfg.loss.loss_weight) == (0.07, 0.2)
