"""The own-dataset template (configs/own_dataset/, docs/own_dataset.md) works as documented.

The user's path, on a generated 2-class COCO-format dataset: edit the dataset block of the
teacher config (``data_root``, ``classes``), fine-tune the teacher from a checkpoint with another
class count (``load_from``), distil, export, and predict with plain mmdet. The models are
swapped for the tiny ones of configs/embedded/ and the schedule for a few iterations, and the
runs use mmengine's Runner in this process (what tools/train.py runs) to spare two interpreter
start-ups; everything else is the template as a user would edit it.
"""

import ast
import importlib.util
import json
import os.path as osp
import shutil

import pytest
import torch
from mmdet.apis import inference_detector, init_detector
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import Runner

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.models.distillers.teacher_config import resolve_config_path
from mmdet_detrdistill.testing import REPO_ROOT, strip_pretrained
from mmdet_detrdistill.testing.model_zoo import metafile_entry

TEMPLATES = osp.join(REPO_ROOT, 'configs', 'own_dataset')
TEACHER = 'deformable-detr_r50_16xb2-50e_own-dataset.py'
STUDENT = 'deformable-detr_r18_16xb2-50e_own-dataset.py'
DISTILL = 'detrdistill_deformable-detr-r50_deformable-detr-r18_16xb2-50e_own-dataset.py'
TINY = osp.join(REPO_ROOT, 'configs', 'embedded', 'deformable-detr_tiny-{}_1xb8-synth.py')
CLASSES = ('rectangle', 'ellipse')  # two of the generator's four shapes
ITERS = 2


def _load_export_main():
    """``main`` of tools/model_converters/export_student.py (the guide's command), here."""
    spec = importlib.util.spec_from_file_location(
        'export_student', osp.join(REPO_ROOT, 'tools', 'model_converters', 'export_student.py')
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def _loaders(cfg: Config) -> list:
    return [cfg[k].dataset for k in ('train_dataloader', 'val_dataloader', 'test_dataloader')]


def _assigns(node: ast.AST, name: str) -> bool:
    return isinstance(node, ast.Assign) and getattr(node.targets[0], 'id', None) == name


def test_template_dataset_is_set_once_and_inherited():
    teacher, student, distill = (
        Config.fromfile(osp.join(TEMPLATES, n)) for n in (TEACHER, STUDENT, DISTILL)
    )
    num_classes = len(teacher.classes)
    assert teacher.model.bbox_head.num_classes == num_classes
    assert student.model.bbox_head.num_classes == num_classes
    assert distill.model.student.bbox_head.num_classes == num_classes
    for cfg in (teacher, student, distill):
        for dataset in _loaders(cfg):
            assert dataset.data_root == teacher.data_root
            assert dataset.metainfo.classes == teacher.classes
        assert cfg.val_evaluator.ann_file.startswith(teacher.data_root)
    # step 1 starts from mmdet's published COCO teacher; the student does not
    with open(osp.join(TEMPLATES, TEACHER)) as f:
        bases = next(
            ast.literal_eval(n.value) for n in ast.parse(f.read()).body if _assigns(n, '_base_')
        )
    (base,) = [b for b in bases if b.startswith('mmdet::')]  # and ../_base_/distill_runtime.py
    assert teacher.load_from == metafile_entry(base)['Weights']
    assert student.load_from is None and distill.load_from is None
    # step 2 distils the step-1 teacher from where tools/train.py writes it
    assert osp.samefile(resolve_config_path(distill.model.teacher), osp.join(TEMPLATES, TEACHER))
    stem, epochs = osp.splitext(TEACHER)[0], teacher.train_cfg.max_epochs
    assert distill.model.teacher_ckpt == f'work_dirs/{stem}/epoch_{epochs}.pth'
    assert student.model.backbone.depth == 18 and teacher.model.backbone.depth == 50


def _two_class_dataset(root: str) -> None:
    """The generated 4-class dataset, with only ``CLASSES`` kept (a user's COCO json)."""
    make_synthetic_coco(root, 12, 4, img_size=96, verbose=False)
    for split in ('train', 'val'):
        path = osp.join(root, 'annotations', f'{split}.json')
        with open(path) as f:
            coco = json.load(f)
        coco['categories'] = [c for c in coco['categories'] if c['name'] in CLASSES]
        kept = {c['id'] for c in coco['categories']}
        coco['annotations'] = [a for a in coco['annotations'] if a['category_id'] in kept]
        with open(path, 'w') as f:
            json.dump(coco, f)


def _edit_template(template_dir: str, data_root: str) -> None:
    """What docs/own_dataset.md asks of a user: edit the dataset block, nothing else."""
    path = osp.join(template_dir, TEACHER)
    with open(path) as f:
        text = f.read()
    for old, new in (
        ("data_root = 'data/own_dataset/'", f'data_root = {data_root!r}'),
        ("classes = ('class_a', 'class_b')", f'classes = {CLASSES!r}'),
    ):
        assert text.count(old) == 1, old
        text = text.replace(old, new)
    with open(path, 'w') as f:
        f.write(text)


def _tiny(cfg: Config, work_dir: str) -> Config:
    """Tiny-run settings: small images, a few iterations, no worker processes."""
    small = Config.fromfile(TINY.format('student'))
    for key in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        cfg[key].dataset.pipeline = small[key].dataset.pipeline
        cfg[key].update(batch_size=2, num_workers=0, persistent_workers=False)
    cfg.train_cfg = dict(type='IterBasedTrainLoop', max_iters=ITERS, val_interval=ITERS)
    cfg.param_scheduler = []
    cfg.default_hooks.checkpoint.update(by_epoch=False, interval=ITERS)
    cfg.default_hooks.logger.interval = 1
    cfg.log_processor = dict(by_epoch=False)
    cfg.work_dir = work_dir
    cfg.randomness = dict(seed=0)
    return cfg


def _tiny_model(which: str, num_classes: int):
    model = Config.fromfile(TINY.format(which)).model
    model.bbox_head.num_classes = num_classes
    return model


def _train(config: str) -> str:
    """Train ``config`` with mmengine's Runner, as tools/train.py does; return the log text."""
    cfg = Config.fromfile(config)
    runner = Runner.from_cfg(cfg)
    runner.train()
    with open(runner.logger.log_file) as f:
        return f.read()


@pytest.mark.slow  # fine-tunes a teacher, distils and exports on generated data
def test_own_dataset_end_to_end(tmp_path, capsys):
    data_root = f'{tmp_path / "data"}/'
    _two_class_dataset(data_root)
    shutil.copytree(osp.join(REPO_ROOT, 'configs'), tmp_path / 'configs')  # relative _base_
    templates = str(tmp_path / 'configs' / 'own_dataset')
    _edit_template(templates, data_root)

    # 1. the teacher, fine-tuned from a "zoo" checkpoint with 4 classes
    teacher = _tiny(Config.fromfile(osp.join(templates, TEACHER)), str(tmp_path / 'teacher'))
    num_classes = teacher.model.bbox_head.num_classes
    assert num_classes == len(CLASSES)
    zoo = MODELS.build(strip_pretrained(_tiny_model('teacher', 4)))
    zoo.init_weights()
    torch.save({'state_dict': zoo.state_dict()}, tmp_path / 'zoo_teacher.pth')
    teacher.model = _tiny_model('teacher', num_classes)
    teacher.load_from = str(tmp_path / 'zoo_teacher.pth')
    teacher.dump(tmp_path / 'teacher.py')
    log = _train(str(tmp_path / 'teacher.py'))
    # mmengine loads the rest of the zoo model and prints what it could not load
    assert 'size mismatch for bbox_head.cls_branches' in capsys.readouterr().out
    assert 'coco/bbox_mAP' in log

    # 2. distil
    distill = _tiny(Config.fromfile(osp.join(templates, DISTILL)), str(tmp_path / 'distill'))
    distill.model.student = _tiny_model('student', distill.model.student.bbox_head.num_classes)
    distill.model.teacher = str(tmp_path / 'teacher.py')
    distill.model.teacher_ckpt = str(tmp_path / 'teacher' / f'iter_{ITERS}.pth')
    distill.dump(tmp_path / 'distill.py')
    log = _train(str(tmp_path / 'distill.py'))
    assert 'detrdistill.' in log and 'coco/bbox_mAP' in log

    # 3. export, then predict with plain mmdet
    out = tmp_path / 'student.pth'
    assert _load_export_main()([str(tmp_path / 'distill' / f'iter_{ITERS}.pth'), str(out)]) == 0
    model = init_detector(str(tmp_path / 'student_config.py'), str(out), device='cpu')
    assert tuple(model.dataset_meta['classes']) == CLASSES
    assert model.bbox_head.num_classes == len(CLASSES)
    image = osp.join(data_root, 'val', '000001.png')
    labels = inference_detector(model, image).pred_instances.labels
    assert len(labels) > 0 and int(labels.max()) < len(CLASSES)


@pytest.mark.parametrize('teacher_classes', [4, 80])
def test_template_refuses_a_teacher_with_other_classes(teacher_classes):
    """A COCO teacher under the 2-class student is refused when the model is built."""
    cfg = Config.fromfile(osp.join(TEMPLATES, DISTILL)).model
    cfg.student = _tiny_model('student', cfg.student.bbox_head.num_classes)
    cfg.teacher = _tiny_model('teacher', teacher_classes)
    cfg.update(teacher_ckpt=None, allow_untrained_teacher=True)
    with pytest.raises(ValueError) as info:
        MODELS.build(cfg)
    msg = str(info.value)
    assert f'= {teacher_classes})' in msg and '= 2)' in msg
    assert 'model.teacher.bbox_head.num_classes' in msg
    assert 'model.student.bbox_head.num_classes' in msg
