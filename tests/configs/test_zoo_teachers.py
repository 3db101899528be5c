"""Configs with MMDetection's published teachers (``*-zoo_*``) distil the model of the zoo.

For each such config: the teacher is one of mmdet's configs listed in its family's
``metafile.yml``, ``teacher_ckpt`` is that entry's ``Weights`` URL, and the teacher the distiller
builds has exactly the parameter names and shapes of the published model's config (so the
published checkpoint loads under the strict loader). The student is the R18 baseline config it
inherits. Nothing is downloaded; tests/configs/test_configs_build_and_step.py builds each as a
distiller (untrained teacher) and runs a training step. The configs with one of mmdet's
published DINO models as teacher are checked the same way; their students are the mmdet R50
configs they inherit.
"""

import ast
import functools
import glob
import os.path as osp
from typing import List, Tuple

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.models.distillers.teacher_config import load_teacher_model_cfg
from mmdet_detrdistill.testing import mmdet_config_path, strip_pretrained
from mmdet_detrdistill.testing.model_zoo import metafile_entry

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
ZOO_CONFIGS = sorted(glob.glob(osp.join(ROOT, 'configs', '*', '*-zoo_*.py')))
# configs whose teacher is one of mmdet's published DINO models (named after that model, not
# `-zoo_`: their students are mmdet's own R50 configs, not the R18 baselines of configs/students)
DINO_TEACHER_CONFIGS = sorted(
    glob.glob(osp.join(ROOT, 'configs', '*', 'd3etr_dino-*.py'))
    + glob.glob(osp.join(ROOT, 'configs', '*', 'detrdistill_dino-*.py'))
)


def shapes(module: torch.nn.Module) -> dict:
    return {k: tuple(v.shape) for k, v in module.state_dict().items()}


def test_zoo_configs_cover_every_family_and_method():
    names = [osp.basename(p) for p in ZOO_CONFIGS]
    for method in ('d3etr', 'detrdistill'):
        for teacher in ('cond-detr', 'dab-detr', 'deformable-detr'):
            prefix = f'{method}_{teacher}-r50-zoo_'
            assert any(n.startswith(prefix) for n in names), prefix


def test_dino_teacher_configs_cover_both_methods_and_scales():
    names = [osp.basename(p) for p in DINO_TEACHER_CONFIGS]
    for method in ('d3etr', 'detrdistill'):
        for pair in ('dino-5scale-swin-l_dino-4scale-r50', 'dino-4scale-r50_deformable-detr-r50'):
            assert any(n.startswith(f'{method}_{pair}_') for n in names), (method, pair)


@functools.cache
def teacher_shapes(teacher: str) -> Tuple[dict, dict]:
    """(the teacher a distiller builds from ``teacher``, the published model): name -> shape.

    Cached: the d3etr and detrdistill configs of a family share their teacher.
    """
    ours = MODELS.build(to_group_detector_cfg(load_teacher_model_cfg(teacher), 'teacher'))
    entry = metafile_entry(teacher)
    published = Config.fromfile(mmdet_config_path(entry['Config'][len('configs/') :]))
    return shapes(ours), shapes(MODELS.build(strip_pretrained(published.model)))


@pytest.mark.parametrize('path', ZOO_CONFIGS + DINO_TEACHER_CONFIGS, ids=osp.basename)
def test_zoo_teacher_is_the_published_model(path):
    cfg = Config.fromfile(path)
    entry = metafile_entry(cfg.model.teacher)
    assert cfg.model.teacher_ckpt == entry['Weights']
    assert entry['Weights'].startswith('https://download.openmmlab.com/')
    ours, published = teacher_shapes(cfg.model.teacher)
    assert ours == published


def _bases(path: str) -> List[str]:
    """The ``_base_`` entries of a config file, as written."""
    with open(path) as f:
        tree = ast.parse(f.read())
    assign = [n for n in tree.body if isinstance(n, ast.Assign)]
    bases = next(ast.literal_eval(n.value) for n in assign if n.targets[0].id == '_base_')
    return [bases] if isinstance(bases, str) else list(bases)


def _student_base(path: str) -> str:
    """The ``_base_`` entry of a zoo config that is its student's own config."""
    return next(b for b in _bases(path) if 'students/' in b)


@pytest.mark.parametrize('path', ZOO_CONFIGS, ids=osp.basename)
def test_zoo_student_is_its_r18_baseline_config(path):
    """The student is configs/students/<...>_r18_...: R18, a neck that takes its channels."""
    base = _student_base(path)
    assert base.startswith('../students/') and '_r18_' in base
    student_cfg = strip_pretrained(Config.fromfile(path).model.student)
    student = MODELS.build(to_group_detector_cfg(student_cfg, 'student'))
    baseline = Config.fromfile(osp.normpath(osp.join(osp.dirname(path), base)))
    assert baseline.model.backbone.init_cfg.checkpoint == 'torchvision://resnet18'
    assert shapes(student) == shapes(MODELS.build(strip_pretrained(baseline.model)))
    assert student.backbone.depth == 18 and student.bbox_head.num_classes == 80
    student.eval()
    with torch.no_grad():  # the neck takes what the R18 backbone gives
        feats = student.extract_feat(torch.zeros(1, 3, 64, 64))
    assert [f.shape[1] for f in feats] == [student.embed_dims] * len(feats)


def _mmdet_base(path: str) -> str:
    """The ``_base_`` entry of a config that is one of mmdet's configs (``mmdet::...``)."""
    return next(b for b in _bases(path) if b.startswith('mmdet::'))


@pytest.mark.parametrize('path', DINO_TEACHER_CONFIGS, ids=osp.basename)
def test_dino_teacher_student_is_mmdets_own_r50_config(path):
    """The student is the model of the mmdet config it inherits: R50, COCO's 80 classes."""
    base = _mmdet_base(path)
    assert '_r50_' in base
    student_cfg = strip_pretrained(Config.fromfile(path).model.student)
    student = MODELS.build(to_group_detector_cfg(student_cfg, 'student'))
    published = Config.fromfile(mmdet_config_path(base[len('mmdet::') :]))
    assert shapes(student) == shapes(MODELS.build(strip_pretrained(published.model)))
    assert student.backbone.depth == 50 and student.bbox_head.num_classes == 80
