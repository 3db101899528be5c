"""StudentOptimWrapperConstructor: the default's parameter groups, minus the EMA teacher."""

import logging

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.logging import MMLogger
from mmengine.optim import build_optim_wrapper

from mmdet_detrdistill.testing import make_batch, smoke_model_cfg

CONFIGS = [
    'configs/oddetr/oddetr_tiny-s_1xb8-synth.py',
    'configs/oddetr/oddetr_tiny-deformable-s_1xb8-synth.py',
]


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def _groups(wrapper, model):
    names = {id(p): n for n, p in model.named_parameters()}
    return [
        (tuple(names[id(p)] for p in g['params']), g['lr'], g['weight_decay'])
        for g in wrapper.optimizer.param_groups
    ]


@pytest.mark.parametrize('config', CONFIGS)
def test_same_groups_as_the_default_without_the_teacher_and_without_warnings(config):
    cfg = Config.fromfile(config).optim_wrapper
    assert cfg.constructor == 'StudentOptimWrapperConstructor'
    assert cfg.paramwise_cfg.custom_keys  # the case where the default walks every module
    model = MODELS.build(smoke_model_cfg(config))
    records = _Records()
    logger = MMLogger.get_current_instance()
    logger.addHandler(records)
    try:
        ours = build_optim_wrapper(model, cfg.copy())
        ours_warnings = list(records.messages)
        default = build_optim_wrapper(model, {k: v for k, v in cfg.items() if k != 'constructor'})
    finally:
        logger.removeHandler(records)
    assert not ours_warnings
    teacher = sum(1 for n, _ in model.named_parameters() if n.startswith('ema_teacher.'))
    assert teacher > 0 and len(records.messages) == teacher  # the default: one per parameter
    assert _groups(ours, model) == _groups(default, model)  # the default skips the teacher too
    optimised = {id(p) for g in ours.optimizer.param_groups for p in g['params']}
    assert optimised == {id(p) for p in model.student.parameters()}


def test_a_step_moves_the_student_and_leaves_the_teacher():
    config = CONFIGS[0]
    model = MODELS.build(smoke_model_cfg(config))
    model.init_weights()
    wrapper = build_optim_wrapper(model, Config.fromfile(config).optim_wrapper)
    teacher = [p.clone() for p in model.teacher.parameters()]
    student = [p.clone() for p in model.student.parameters()]
    loss, _ = model.parse_losses(model.train()(**make_batch(model), mode='loss'))
    wrapper.update_params(loss)
    assert all(torch.equal(a, b) for a, b in zip(teacher, model.teacher.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(student, model.student.parameters()))
