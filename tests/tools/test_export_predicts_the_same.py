"""An exported student, loaded by plain mmdet without this package, predicts
exactly what the distiller predicted."""

import pickle
import subprocess
import sys
import textwrap

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg, tiny_dino_cfg
from mmdet_detrdistill.utils.export import export_student

pytestmark = pytest.mark.slow  # trains a tiny distiller per method before exporting

PLAIN_MMDET = textwrap.dedent(
    """
    import pickle, sys, torch
    from mmengine.config import Config
    from mmengine.runner import load_checkpoint
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    register_all_modules()
    config, ckpt, batch_file, out = sys.argv[1:]
    model = MODELS.build(Config.fromfile(config).model)
    load_checkpoint(model, ckpt, map_location='cpu', strict=True)  # torch.load, weights_only
    model.eval()
    with open(batch_file, 'rb') as f:  # written by the test itself
        batch = pickle.load(f)
    with torch.no_grad():
        preds = model(**batch, mode='predict')
    assert 'mmdet_detrdistill' not in sys.modules
    torch.save([(p.pred_instances.bboxes, p.pred_instances.scores, p.pred_instances.labels)
                for p in preds], out)
    """
)


def _model_cfg(family):
    """A tiny model of ``family`` (``'dino'``: mmdet's DINO-4scale, shrunk)."""
    return tiny_dino_cfg() if family == 'dino' else tiny_detr_cfg(family)


@pytest.mark.parametrize(
    'method, family',
    [
        ('D3ETRDistiller', 'conditional'),
        ('D3ETRDistiller', 'deformable-twostage'),
        ('DETRDistillDistiller', 'deformable'),
        ('ODDETRDistiller', 'dab'),  # the EMA teacher is in the checkpoint, not in the export
        ('D3ETRDistiller', 'dino'),  # GroupDINO inside, mmdet's DINO exported
        ('ODDETRDistiller', 'dino'),
    ],
)
def test_exported_student_predicts_what_the_distiller_predicted(method, family, tmp_path):
    cfg = distiller_cfg(_model_cfg(family), _model_cfg(family), method=method)
    cfg_text = Config(dict(model=cfg)).pretty_text
    model = MODELS.build(cfg)
    assert Config(dict(model=cfg)).pretty_text == cfg_text  # building left the config alone
    model.init_weights()
    if method == 'ODDETRDistiller':  # an EMA teacher that differs from the student
        model.train()
        model(**make_batch(model), mode='loss')
        with torch.no_grad():
            for p in model.student.parameters():
                p.add_(torch.randn_like(p) * 0.01)
    model.eval()
    # 160 px: enough encoder tokens for two-stage top-k proposals
    two_stage = family.endswith('twostage') or family == 'dino'
    shapes = ((3, 160, 160), (3, 160, 128)) if two_stage else None
    batch = make_batch(model, training=False, **({'image_shapes': shapes} if shapes else {}))
    with torch.no_grad():
        expected = model(**batch, mode='predict')
    ckpt = tmp_path / 'iter_10.pth'
    meta = dict(cfg=cfg_text, dataset_meta=dict(classes=('a', 'b', 'c')))
    torch.save(dict(meta=meta, state_dict=model.state_dict()), ckpt)

    student_ckpt, student_cfg = export_student(str(ckpt), str(tmp_path / 'student.pth'))
    assert student_cfg is not None
    with open(tmp_path / 'batch.pkl', 'wb') as f:
        pickle.dump(batch, f)
    script = tmp_path / 'plain_mmdet.py'
    script.write_text(PLAIN_MMDET)
    out = tmp_path / 'preds.pth'
    run = subprocess.run(
        [
            sys.executable,
            str(script),
            student_cfg,
            student_ckpt,
            str(tmp_path / 'batch.pkl'),
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    got = torch.load(out)
    for pred, (bboxes, scores, labels) in zip(expected, got):
        assert torch.equal(pred.pred_instances.bboxes, bboxes)
        assert torch.equal(pred.pred_instances.scores, scores)
        assert torch.equal(pred.pred_instances.labels, labels)
    assert Config.fromfile(student_cfg).model.type == cfg.student.type  # a plain mmdet type
