"""mmdet's ``init_detector`` on a distiller config says to export the student first."""

import os.path as osp

import pytest
from mmdet.apis import init_detector
from mmdet.registry import MODELS
from mmengine.config import Config

from mmdet_detrdistill.models.distillers.inference_guard import DistillerForInferenceError
from mmdet_detrdistill.testing import REPO_ROOT, distiller_cfg, tiny_detr_cfg

CONFIG = osp.join(REPO_ROOT, 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py')


def test_init_detector_on_a_distiller_config_says_to_export_the_student():
    with pytest.raises(DistillerForInferenceError, match='export it first') as err:
        init_detector(CONFIG, device='cpu')
    assert 'export_student.py' in str(err.value)


def test_the_marker_is_ignored_when_training_builds_the_config():
    cfg = Config.fromfile(CONFIG)
    cfg.model.allow_untrained_teacher, cfg.model.teacher_ckpt = True, None
    model = MODELS.build(cfg.model)
    assert not hasattr(model, 'backbone')


def test_anything_but_the_marker_as_backbone_names_the_student_key():
    cfg = distiller_cfg(tiny_detr_cfg('conditional'), tiny_detr_cfg('conditional'))
    cfg.backbone = dict(type='ResNet', depth=18)
    with pytest.raises(TypeError, match=r'model\.student\.backbone'):
        MODELS.build(cfg)
