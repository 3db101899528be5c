"""export_student(ema=True) / ``--ema``: OD-DETR's EMA model as a plain mmdet checkpoint."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from mmengine.runner import load_checkpoint

from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg
from mmdet_detrdistill.utils.export import export_student

REPO = Path(__file__).resolve().parents[2]


def _oddetr_checkpoint(path: Path) -> torch.nn.Module:
    """A tiny OD-DETR distiller whose EMA differs from its student, saved as the Runner does."""
    cfg = distiller_cfg(tiny_detr_cfg('dab'), None, method='ODDETRDistiller')
    model = MODELS.build(cfg)
    model.init_weights()
    with torch.no_grad():
        for p in model.ema_model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    text = Config(dict(model=cfg, val_cfg=dict(type='StudentAndEMAValLoop'))).pretty_text
    meta = dict(cfg=text, iter=10, dataset_meta=dict(classes=('a', 'b', 'c')))
    torch.save(dict(meta=meta, state_dict=model.state_dict()), path)
    return model.eval()


def _cli(*args: str) -> subprocess.CompletedProcess:
    script = REPO / 'tools' / 'model_converters' / 'export_student.py'
    return subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=120
    )


def test_ema_export_holds_the_ema_tensors_and_predicts_as_the_ema_model(tmp_path):
    src = tmp_path / 'iter_10.pth'
    model = _oddetr_checkpoint(src)
    out, config_path = export_student(src, tmp_path / 'ema.pth', ema=True)
    exported = torch.load(out, weights_only=True)
    ema_state = model.ema_model.state_dict()
    assert set(exported['state_dict']) == set(ema_state) == set(model.student.state_dict())
    assert all(torch.equal(v, ema_state[k]) for k, v in exported['state_dict'].items())
    student_w = model.student.state_dict()['bbox_head.fc_cls.weight']
    assert not torch.equal(exported['state_dict']['bbox_head.fc_cls.weight'], student_w)
    assert exported['meta']['exported_model'] == 'ema'

    # the student's config, as plain mmdet reads it: our validation loop becomes mmengine's
    cfg = Config.fromfile(config_path)
    assert cfg.model.type == 'DABDETR' and cfg.val_cfg.type == 'ValLoop'
    _, student_config = export_student(src, tmp_path / 'student.pth')
    assert Path(student_config).read_text() == Path(config_path).read_text()
    plain = MODELS.build(cfg.model)
    load_checkpoint(plain, out, map_location='cpu', strict=True)
    batch = make_batch(model, training=False)
    with torch.no_grad():
        expected = model.ema_model(**batch, mode='predict')
        got = plain.eval()(**batch, mode='predict')
    for e, g in zip(expected, got):
        assert torch.equal(e.pred_instances.bboxes, g.pred_instances.bboxes)
        assert torch.equal(e.pred_instances.scores, g.pred_instances.scores)


def test_ema_export_of_a_checkpoint_without_ema_is_a_clear_error(tmp_path):
    cfg = distiller_cfg(tiny_detr_cfg('dab'), tiny_detr_cfg('dab'), method='D3ETRDistiller')
    src = tmp_path / 'd3etr.pth'
    torch.save(dict(meta=dict(), state_dict=MODELS.build(cfg).state_dict()), src)
    with pytest.raises(ValueError, match='holds no EMA weights.*not an OD-DETR') as info:
        export_student(src, tmp_path / 'ema.pth', ema=True)
    assert str(src) in str(info.value)

    run = _cli(str(src), str(tmp_path / 'ema.pth'), '--ema')
    assert run.returncode == 1 and 'Traceback' not in run.stderr
    assert run.stderr.startswith('error: ') and len(run.stderr.strip().splitlines()) == 1
    assert str(src) in run.stderr and 'not an OD-DETR' in run.stderr
    assert os.listdir(tmp_path) == ['d3etr.pth']  # nothing written


@pytest.mark.slow  # a CLI process; the export it runs is tested in-process above
def test_cli_ema(tmp_path):
    src = tmp_path / 'iter_10.pth'
    model = _oddetr_checkpoint(src)
    run = _cli(str(src), str(tmp_path / 'ema.pth'), '--ema')
    assert run.returncode == 0, run.stderr
    assert f'({len(model.ema_model.state_dict())} EMA model tensors)' in run.stdout
    assert _cli(str(src), str(tmp_path / 'ema.pth'), '--ema').returncode == 1  # no overwrite
