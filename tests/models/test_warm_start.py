"""``load_from`` a plain student checkpoint warm-starts a distiller's student; a distiller
checkpoint still resumes; anything else is refused. The teacher file is needed only to train."""

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.runner import Runner, load_checkpoint

from mmdet_detrdistill.models.distillers import warm_start
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_conditional_detr_cfg
from mmdet_detrdistill.utils.checkpoint import CheckpointMismatchError


def _plain_student_ckpt(path, seed=1):
    """A checkpoint of the student detector trained alone (no ``student.`` prefix)."""
    torch.manual_seed(seed)
    student = MODELS.build(tiny_conditional_detr_cfg())
    student.init_weights()
    torch.save({'meta': {}, 'state_dict': student.state_dict()}, path)
    return student.state_dict()


def _distiller(method='D3ETRDistiller', **kwargs):
    cfg = tiny_conditional_detr_cfg()
    model = MODELS.build(distiller_cfg(cfg, cfg, method=method, **kwargs))
    model.init_weights()
    return model


@pytest.fixture
def logged(monkeypatch):
    lines = []
    monkeypatch.setattr(warm_start, 'print_log', lambda msg, **kw: lines.append(msg))
    return lines


def _assert_student_is(model, expected):
    for key, value in expected.items():
        assert torch.equal(model.student.state_dict()[key], value), key


def test_load_from_plain_student_checkpoint_warm_starts_the_student(tmp_path, logged):
    expected = _plain_student_ckpt(tmp_path / 'student.pth')
    model = _distiller()
    ckpt = str(tmp_path / 'student.pth')
    runner = Runner(model, work_dir=str(tmp_path / 'work'), load_from=ckpt, default_scope='mmdet')
    runner.load_or_resume()
    _assert_student_is(model, expected)
    n = len(expected)
    assert len(logged) == 1 and f'{n} of the {n} student tensors loaded' in logged[0]


def test_plain_student_checkpoint_loads_strictly(tmp_path, logged):
    expected = _plain_student_ckpt(tmp_path / 'student.pth')
    model = _distiller()
    state = torch.load(tmp_path / 'student.pth')['state_dict']
    model.load_state_dict(state, strict=True)  # no missing or unexpected key
    _assert_student_is(model, expected)


def test_distiller_checkpoint_loads_unchanged(tmp_path, logged):
    source = _distiller()
    with torch.no_grad():
        for p in source.student.parameters():
            p.add_(1.0)
    torch.save({'state_dict': source.state_dict()}, tmp_path / 'distill.pth')
    model = _distiller()
    load_checkpoint(model, str(tmp_path / 'distill.pth'), strict=True)
    _assert_student_is(model, source.student.state_dict())
    assert logged == []  # not a warm start


def test_checkpoint_matching_neither_is_refused(tmp_path, logged):
    torch.save({'state_dict': {'head.fc.weight': torch.zeros(2, 2)}}, tmp_path / 'other.pth')
    model = _distiller()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r'head\.fc\.weight.*Nothing was loaded'):
        load_checkpoint(model, str(tmp_path / 'other.pth'))
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def test_oddetr_plain_student_checkpoint_starts_the_ema_teacher_too(tmp_path, logged):
    expected = _plain_student_ckpt(tmp_path / 'student.pth')
    model = _distiller('ODDETRDistiller')
    load_checkpoint(model, str(tmp_path / 'student.pth'), strict=True)
    _assert_student_is(model, expected)
    for key, value in expected.items():
        assert torch.equal(model.ema_teacher.module.state_dict()[key], value), key
    assert 'student, ema_teacher.module' in logged[0]


def test_student_init_cfg_pretrained_loads_the_plain_checkpoint(tmp_path):
    expected = _plain_student_ckpt(tmp_path / 'student.pth')
    cfg = tiny_conditional_detr_cfg()
    student = dict(cfg, init_cfg=dict(type='Pretrained', checkpoint=str(tmp_path / 'student.pth')))
    model = MODELS.build(distiller_cfg(student, cfg))
    model.init_weights()
    _assert_student_is(model, expected)


def test_teacher_file_is_needed_to_train_not_to_build_or_predict(tmp_path):
    cfg = tiny_conditional_detr_cfg()
    missing = str(tmp_path / 'nowhere.pth')
    model = MODELS.build(distiller_cfg(cfg, cfg, teacher_ckpt=missing))
    model.eval()
    with torch.no_grad():
        model(**make_batch(model, training=False), mode='predict')
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        model.init_weights()  # what the Runner calls when training starts
    with pytest.raises(FileNotFoundError, match='nowhere.pth'):
        model.train()(**make_batch(model), mode='loss')


def test_teacher_checkpoint_is_loaded_when_training_starts(tmp_path):
    teacher_cfg = tiny_conditional_detr_cfg(num_queries=12)
    source = MODELS.build(teacher_cfg)
    source.init_weights()
    torch.save({'state_dict': source.state_dict()}, tmp_path / 't.pth')
    cfg = distiller_cfg(
        tiny_conditional_detr_cfg(), teacher_cfg, teacher_ckpt=str(tmp_path / 't.pth')
    )
    for start in ('init_weights', 'loss'):
        model = MODELS.build(cfg)
        if start == 'init_weights':
            model.init_weights()
        else:
            model(**make_batch(model), mode='loss')
        for key, value in source.state_dict().items():
            assert torch.equal(model.teacher.state_dict()[key], value), (start, key)


def test_unrelated_detector_sharing_only_buffers_is_refused(tmp_path, logged):
    # what a Faster R-CNN checkpoint shares with a DETR student of another depth: the
    # BatchNorm counters (same name, shape ()) and nothing else
    model = _distiller()
    shared = {k: v for k, v in model.student.state_dict().items() if 'num_batches_tracked' in k}
    assert shared
    other = {**shared, 'rpn_head.rpn_conv.weight': torch.zeros(4, 4, 3, 3)}
    torch.save({'state_dict': other}, tmp_path / 'faster_rcnn.pth')
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointMismatchError, match=r'fills 0\.0% of the student') as err:
        load_checkpoint(model, str(tmp_path / 'faster_rcnn.pth'))
    assert 'Nothing was loaded' in str(err.value)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())


def _share(model, state):
    params = dict(model.student.named_parameters())
    return sum(params[k].numel() for k in state if k in params) / sum(
        p.numel() for p in params.values()
    )


def test_share_is_counted_in_parameter_elements_and_named_in_the_log(tmp_path, logged):
    # the student without its head: a warm start for a dataset with other classes
    model = _distiller()
    state = {k: v for k, v in model.student.state_dict().items() if not k.startswith('bbox_head')}
    share = _share(model, state)
    assert warm_start.MIN_WARM_START_SHARE <= share < 1
    torch.save({'state_dict': state}, tmp_path / 'no_head.pth')
    load_checkpoint(model, str(tmp_path / 'no_head.pth'))
    assert f'{share:.1%} of the parameters' in logged[-1]


def test_partial_distiller_checkpoint_is_refused(tmp_path, logged):
    source = _distiller()
    state = {k: v for k, v in source.state_dict().items() if k.startswith('student.bbox_head.')}
    torch.save({'state_dict': state}, tmp_path / 'head_only.pth')
    with pytest.raises(CheckpointMismatchError, match='fills'):
        load_checkpoint(_distiller(), str(tmp_path / 'head_only.pth'))
