"""D3ETRDistiller: losses, gradients, and how the teacher is held."""

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_conditional_detr_cfg


def _distiller(student=None, teacher=None, **kwargs):
    student = student or tiny_conditional_detr_cfg()
    teacher = teacher or tiny_conditional_detr_cfg(num_queries=12, num_decoder_layers=3)
    model = MODELS.build(distiller_cfg(student, teacher, **kwargs))
    model.init_weights()
    return model


def _distill_keys(losses):
    return [k for k in losses if k.startswith('d3etr.')]


def test_loss_keys_name_method_kind_and_layer():
    model = _distiller()
    losses = model(**make_batch(model), mode='loss')
    names = ['loss_cls', 'loss_bbox', 'loss_iou', 'loss_self_attn', 'loss_cross_attn']
    expected = {
        f'd3etr.{kind}.d{layer}.{n}'
        for kind in ('adaptive', 'fixed')
        for layer in range(2)
        for n in names
    }
    assert set(_distill_keys(losses)) == expected
    assert {'loss_cls', 'loss_bbox', 'loss_iou', 'd0.loss_cls'} <= set(losses)  # GT losses
    assert all(torch.isfinite(v).all() for v in losses.values())


def test_distill_losses_zero_when_student_is_teacher():
    cfg = tiny_conditional_detr_cfg()
    model = _distiller(student=cfg, teacher=cfg)
    model.student.load_state_dict(model.teacher.state_dict())
    model.eval()  # same dropout state as the teacher
    with torch.no_grad():
        losses = model(**make_batch(model), mode='loss')
    distill = {k: v.item() for k, v in losses.items() if k.startswith('d3etr.')}
    assert len(distill) == 20
    assert max(abs(v) for v in distill.values()) < 1e-4, distill


def test_distill_losses_positive_when_student_differs():
    cfg = tiny_conditional_detr_cfg()
    model = _distiller(student=cfg, teacher=cfg).eval()
    with torch.no_grad():
        losses = model(**make_batch(model), mode='loss')
    assert all(losses[k].item() > 0 for k in _distill_keys(losses) if 'loss_iou' not in k)


def test_gradients_reach_every_student_parameter_and_not_the_teacher():
    model = _distiller().train()
    losses = model(**make_batch(model), mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.teacher.parameters())
    missing = [n for n, p in model.student.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing  # DDP needs no find_unused_parameters


def test_distillation_alone_trains_the_fixed_group_through_student_weights():
    model = _distiller().train()
    losses = model(**make_batch(model), mode='loss')
    losses['d3etr.fixed.d1.loss_bbox'].backward()
    assert model.student.decoder.layers[0].self_attn.qpos_proj.weight.grad.abs().sum() > 0
    own_grad = model.student.query_embedding.weight.grad
    assert own_grad is None or not own_grad.any()  # the own group cannot see the fixed group


def test_teacher_outside_module_tree():
    model = _distiller()
    assert all(k.startswith('student.') for k in model.state_dict())
    assert {id(p) for p in model.parameters()} == {id(p) for p in model.student.parameters()}
    assert 'teacher' not in dict(model.named_modules())


def test_teacher_stays_in_eval_mode():
    model = _distiller()
    model.train()
    assert model.student.training
    assert not any(m.training for m in model.teacher.modules())


def test_to_moves_the_teacher_too():
    model = _distiller().double()
    assert all(p.dtype == torch.float64 for p in model.teacher.parameters())


def test_init_weights_leaves_the_teacher_alone():
    model = _distiller()
    before = {k: v.clone() for k, v in model.teacher.state_dict().items()}
    model.init_weights()
    after = model.teacher.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_predict_and_tensor_modes_are_the_students():
    model = _distiller().eval()
    batch = make_batch(model, training=False)
    with torch.no_grad():
        ours = model(**batch, mode='predict')
        theirs = model.student(**batch, mode='predict')
        raw = model(**batch, mode='tensor')
    torch.testing.assert_close(ours[0].pred_instances.bboxes, theirs[0].pred_instances.bboxes)
    torch.testing.assert_close(raw[0], model.student(**batch, mode='tensor')[0])


def test_adaptive_only_adds_no_query_group():
    model = _distiller(
        matcher=dict(type='MixMatcher', fixed=False),
        adaptive_losses=dict(loss_self_attn=None, loss_cross_attn=None),
    )
    assert not model.attention_kinds()
    losses = model(**make_batch(model), mode='loss')
    assert not any('fixed' in k or 'attn' in k for k in losses)


def test_untrained_teacher_must_be_explicit():
    cfg = distiller_cfg(tiny_conditional_detr_cfg(), tiny_conditional_detr_cfg())
    cfg.pop('allow_untrained_teacher')
    with pytest.raises(ValueError, match='teacher_ckpt'):
        MODELS.build(cfg)


def test_missing_teacher_checkpoint_fails_at_build_time(tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        _distiller(teacher_ckpt=str(tmp_path / 'nowhere.pth'))


def test_teacher_checkpoint_is_loaded(tmp_path):
    teacher_cfg = tiny_conditional_detr_cfg(num_queries=12)
    src = MODELS.build(teacher_cfg)
    src.init_weights()
    torch.save({'state_dict': src.state_dict()}, tmp_path / 't.pth')
    model = _distiller(teacher=teacher_cfg, teacher_ckpt=str(tmp_path / 't.pth'))
    for k, v in src.state_dict().items():
        assert torch.equal(model.teacher.state_dict()[k], v), k


def test_unknown_loss_key_is_refused():
    with pytest.raises(KeyError, match='loss_klass'):
        _distiller(adaptive_losses=dict(loss_klass=None))


def test_different_preprocessing_is_refused():
    teacher = tiny_conditional_detr_cfg()
    teacher.data_preprocessor.mean = [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match='mean'):
        _distiller(teacher=teacher)
