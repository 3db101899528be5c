"""Distillation under autocast, with empty images and heavy padding."""

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg

METHODS = ['D3ETRDistiller', 'DETRDistillDistiller', 'ODDETRDistiller']
PREFIXES = ('d3etr.', 'detrdistill.', 'oddetr.')
KD_WITHOUT_GT = {
    'D3ETRDistiller': 'd3etr.adaptive.d1.loss_cls',
    'DETRDistillDistiller': 'detrdistill.logits.d1.loss_cls',
}


def _distiller(family, method='D3ETRDistiller'):
    student, teacher = tiny_detr_cfg(family), tiny_detr_cfg(family, num_queries=12)
    cfg = distiller_cfg(student, teacher, method=method)
    model = MODELS.build(cfg)
    model.init_weights()
    return model.train()


def _total(losses):
    return sum(v for k, v in losses.items() if 'loss' in k)


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('family', ['conditional', 'deformable'])
def test_bf16_autocast_step_is_finite(family, method):
    model = _distiller(family, method)
    batch = make_batch(model)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        losses = model(**batch, mode='loss')
    bad = [k for k, v in losses.items() if not torch.isfinite(v).all()]
    assert not bad
    distill = {k: v for k, v in losses.items() if k.startswith(PREFIXES)}
    assert distill and all(v.dtype == torch.float32 for v in distill.values())
    _total(losses).backward()
    assert all(
        torch.isfinite(p.grad).all() for p in model.student.parameters() if p.grad is not None
    )


@pytest.mark.parametrize('method', METHODS)
@pytest.mark.parametrize('family', ['conditional', 'dab', 'deformable-twostage'])
def test_images_without_ground_truth(family, method):
    model = _distiller(family, method)
    shapes = ((3, 160, 160), (3, 160, 128))
    batch = make_batch(model, image_shapes=shapes, num_items=(0, 0))
    assert all(len(s.gt_instances) == 0 for s in batch['data_samples'])
    losses = model(**batch, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    kd_key = KD_WITHOUT_GT.get(method)
    if kd_key:  # distillation from a trained teacher does not need GT
        assert losses[kd_key] > 0
    _total(losses).backward()


def test_mostly_padded_batch():
    """A small image padded to a large one: masked keys get no attention."""
    model = _distiller('conditional')
    batch = make_batch(model, image_shapes=((3, 128, 128), (3, 32, 32)))
    losses = model(**batch, mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    _total(losses).backward()


@pytest.mark.parametrize('method', ['D3ETRDistiller', 'DETRDistillDistiller'])
def test_teacher_that_detects_nothing(method):
    """Every teacher score ~0 (no threshold anywhere would keep a box): still finite."""
    model = _distiller('deformable', method)
    with torch.no_grad():
        for branch in model.teacher.bbox_head.cls_branches:
            branch.bias.fill_(-60.0)
    losses = model(**make_batch(model), mode='loss')
    assert all(torch.isfinite(v) for v in losses.values())
    _total(losses).backward()
    grads = [p.grad for p in model.student.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize(
    'component', [dict(type='AuxiliaryQueryGroups'), dict(type='FixedMatchKD')], ids=str
)
def test_teacher_query_components_refuse_another_query_format(component):
    cfg = distiller_cfg(
        tiny_detr_cfg('dab', embed_dims=32),
        tiny_detr_cfg('deformable', embed_dims=32),
        method='ConfigurableDistiller',
        components=dict(c=component),
    )
    with pytest.raises(ValueError, match='same query format'):
        MODELS.build(cfg)
