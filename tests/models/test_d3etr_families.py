"""D3ETR on every family: zero loss at equality, gradients to the student only."""

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.testing import FAMILY_CONFIGS, distiller_cfg, make_batch, tiny_detr_cfg

FAMILIES = list(FAMILY_CONFIGS)


def _distiller(family, same=True):
    teacher = tiny_detr_cfg(family) if same else tiny_detr_cfg(family, num_queries=12)
    model = MODELS.build(distiller_cfg(tiny_detr_cfg(family), teacher))
    model.init_weights()
    return model


@pytest.mark.parametrize('family', FAMILIES)
def test_distill_losses_zero_when_student_is_teacher(family):
    model = _distiller(family)
    model.student.load_state_dict(model.teacher.state_dict())
    model.eval()
    with torch.no_grad():
        losses = model(**make_batch(model), mode='loss')
    distill = {k: v.item() for k, v in losses.items() if k.startswith('d3etr.')}
    assert len(distill) == 2 * 2 * 5  # kinds x layers x losses
    assert max(abs(v) for v in distill.values()) < 1e-4, distill


@pytest.mark.parametrize('family', FAMILIES)
def test_gradients_reach_every_student_parameter_only(family):
    model = _distiller(family, same=False).train()
    losses = model(**make_batch(model), mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    assert losses['d3etr.adaptive.d1.loss_cross_attn'] > 0
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None for p in model.teacher.parameters())
    missing = [n for n, p in model.student.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing


@pytest.mark.parametrize('teacher', ['deformable', 'conditional', 'dab'])
def test_fixed_matching_needs_the_same_query_format(teacher):
    student = tiny_detr_cfg('deformable-twostage')  # 256 wide, 4-d proposal references
    cfg = distiller_cfg(student, tiny_detr_cfg(teacher, embed_dims=256))
    with pytest.raises(ValueError, match='same query format.*matcher.fixed=False'):
        MODELS.build(cfg)


@pytest.mark.parametrize('teacher, student', [('deformable', 'conditional'), ('dab', 'deformable')])
def test_cross_family_adaptive_matching_distils(teacher, student):
    cfg = distiller_cfg(
        tiny_detr_cfg(student),
        tiny_detr_cfg(teacher, embed_dims=256),
        matcher=dict(type='MixMatcher', fixed=False),
        adaptive_losses=dict(loss_cross_attn=None),
    )
    model = MODELS.build(cfg)
    model.init_weights()
    losses = model(**make_batch(model), mode='loss')
    assert 'd3etr.adaptive.d1.loss_self_attn' in losses and not any('fixed' in k for k in losses)
    sum(v for k, v in losses.items() if 'loss' in k).backward()
