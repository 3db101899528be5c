"""Non-finite input stops cleanly: a NaN teacher weight is refused when the teacher is loaded,
a non-finite loss raises naming its key and iteration before the optimizer changes anything."""

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.logging import MessageHub
from mmengine.optim import OptimWrapper

from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_conditional_detr_cfg
from mmdet_detrdistill.utils.finite import NonFiniteError


def test_nan_teacher_weight_is_refused_naming_the_tensor(tmp_path):
    teacher_cfg = tiny_conditional_detr_cfg()
    teacher = MODELS.build(teacher_cfg)
    teacher.init_weights()
    state = teacher.state_dict()
    state['decoder.layers.1.ffn.layers.1.weight'][0, 0] = float('nan')
    state['query_embedding.weight'][2, 1] = float('inf')
    torch.save({'state_dict': state}, tmp_path / 'teacher.pth')
    cfg = distiller_cfg(teacher_cfg, teacher_cfg, teacher_ckpt=str(tmp_path / 'teacher.pth'))
    model = MODELS.build(cfg)
    with pytest.raises(NonFiniteError) as info:
        model.init_weights()
    msg = str(info.value)
    assert 'decoder.layers.1.ffn.layers.1.weight' in msg and 'query_embedding.weight' in msg
    assert 'teacher.pth' in msg and 'teacher' in msg


def _train_step_with_nan_in(key, tmp_path, monkeypatch):
    cfg = tiny_conditional_detr_cfg()
    model = MODELS.build(distiller_cfg(cfg, cfg))
    model.init_weights()
    component = next(iter(model.components.values()))
    original = component.loss

    def nan_loss(*args, **kwargs):
        losses = original(*args, **kwargs)
        losses[key] = losses[key] * float('nan')
        return losses

    monkeypatch.setattr(component, 'loss', nan_loss)
    optim = OptimWrapper(torch.optim.AdamW(model.parameters(), lr=1e-2))
    before = {k: v.detach().clone() for k, v in model.named_parameters()}
    batch = make_batch(model)
    MessageHub.get_current_instance().update_info('iter', 41)  # the 42nd iteration
    with pytest.raises(NonFiniteError) as info:
        model.train_step(dict(inputs=batch['inputs'], data_samples=batch['data_samples']), optim)
    return model, before, str(info.value)


def test_nan_loss_names_key_and_iteration_before_any_update(tmp_path, monkeypatch):
    cfg = tiny_conditional_detr_cfg()
    probe = MODELS.build(distiller_cfg(cfg, cfg))
    key = next(k for k in probe(**make_batch(probe), mode='loss') if k.startswith('d3etr.'))
    model, before, msg = _train_step_with_nan_in(key, tmp_path, monkeypatch)
    assert key in msg and 'iteration 42' in msg
    assert 'loss_cls=' not in msg.replace(key, '')  # only the non-finite key is named
    for name, value in model.named_parameters():  # (BN statistics move in any forward)
        assert torch.equal(value, before[name]), name  # the optimizer changed nothing
