"""A teacher with another class count than the student is refused when the distiller is built."""

import pytest
from mmdet.registry import MODELS
from mmengine.config import Config

from mmdet_detrdistill.testing import distiller_cfg, tiny_detr_cfg


@pytest.mark.parametrize('method', ['D3ETRDistiller', 'DETRDistillDistiller'])
def test_class_count_mismatch_names_both_counts_and_keys(method):
    cfg = distiller_cfg(tiny_detr_cfg(num_classes=4), tiny_detr_cfg(num_classes=2), method)
    with pytest.raises(ValueError) as info:
        MODELS.build(cfg)
    msg = str(info.value)
    assert 'model.teacher.bbox_head.num_classes = 2' in msg
    assert 'model.student.bbox_head.num_classes = 4' in msg


def test_teacher_config_file_is_named(tmp_path):
    path = tmp_path / 'teacher.py'
    Config(dict(model=tiny_detr_cfg(num_classes=80))).dump(path)
    cfg = distiller_cfg(tiny_detr_cfg(num_classes=2), str(path))
    with pytest.raises(ValueError) as info:
        MODELS.build(cfg)
    msg = str(info.value)
    assert f'model.bbox_head.num_classes of the teacher config {str(path)!r} = 80' in msg
    assert 'model.student.bbox_head.num_classes = 2' in msg


def test_same_class_count_builds():
    distiller = MODELS.build(
        distiller_cfg(tiny_detr_cfg(num_classes=2), tiny_detr_cfg(num_classes=2))
    )
    assert distiller.teacher.bbox_head.num_classes == distiller.student.bbox_head.num_classes == 2
