"""The exported student config and checkpoint run in a process where this package cannot be
imported: Runner, its optimizer and the test loop, as mmdet's ``tools/test.py`` would, and
inference with mmdet's ``DetInferencer``, as the README shows."""

import glob
import os
import subprocess
import sys
import textwrap

import pytest
import torch
from mmdet.registry import HOOKS, MODELS
from mmengine.config import Config

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import REPO_ROOT
from mmdet_detrdistill.utils.export import export_student
from mmdet_detrdistill.utils.plain_config import own_registered_types

CONFIG = 'configs/oddetr/oddetr_tiny-s_1xb8-synth.py'  # has StudentOptimWrapperConstructor

# run as mmdet's tools/test.py does, with this package made unimportable
PLAIN_MMDET = textwrap.dedent(
    """
    import sys
    sys.modules['mmdet_detrdistill'] = None  # any import of it raises ImportError
    from mmengine.config import Config
    from mmengine.runner import Runner
    config, ckpt, work_dir, image = sys.argv[1:]
    cfg = Config.fromfile(config)
    cfg.work_dir, cfg.load_from = work_dir, ckpt
    runner = Runner.from_cfg(cfg)
    optim_wrapper = runner.build_optim_wrapper(cfg.optim_wrapper)
    assert len(optim_wrapper.optimizer.param_groups) > 0
    metrics = runner.test()
    print('PLAIN_MMDET_OK', sorted(metrics)[0])
    from mmdet.apis import DetInferencer
    inferencer = DetInferencer(model=config, weights=ckpt, device='cpu', show_progress=False)
    pred = inferencer(image, out_dir=work_dir + '/vis', no_save_pred=False)['predictions'][0]
    assert len(pred['bboxes']) == len(pred['scores']) == len(pred['labels']) > 0
    print('DET_INFERENCER_OK', len(pred['bboxes']))
    """
)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    make_synthetic_coco(str(root), 4, 4, img_size=96, verbose=False)
    return f'{root}/'


def _training_cfg(data_root: str) -> Config:
    """The OD-DETR tiny config with every hook of this package, as a run stores it."""
    cfg = Config.fromfile(os.path.join(REPO_ROOT, CONFIG))
    hooks = cfg.get('custom_hooks', [])
    own_hooks = [n for n, (cls, reg) in own_registered_types().items() if reg is HOOKS]
    hooks += [dict(type=n) for n in own_hooks if n not in [h['type'] for h in hooks]]
    cfg.custom_hooks = hooks  # (a hook with an mmengine base becomes that base)
    for split in ('train', 'val', 'test'):
        cfg[f'{split}_dataloader'].dataset.data_root = data_root
    for split in ('val', 'test'):
        cfg[f'{split}_evaluator'].ann_file = f'{data_root}annotations/val.json'
    return cfg


@pytest.mark.slow
def test_exported_student_runs_where_this_package_cannot_be_imported(data_root, tmp_path):
    cfg = _training_cfg(data_root)
    model = MODELS.build(cfg.model)
    model.init_weights()
    meta = dict(cfg=cfg.pretty_text, dataset_meta=dict(classes=('a', 'b', 'c', 'd')))
    torch.save(dict(meta=meta, state_dict=model.state_dict()), tmp_path / 'iter_2.pth')
    out, config_path = export_student(str(tmp_path / 'iter_2.pth'), str(tmp_path / 'student.pth'))

    text = open(config_path).read()
    assert 'mmdet_detrdistill' not in text
    assert not [n for n in own_registered_types() if f"'{n}'" in text]
    exported = Config.fromfile(config_path)
    assert HOOKS.get(exported.default_hooks.checkpoint.type) is HOOKS.get('CheckpointHook')
    umask = os.umask(0)
    os.umask(umask)
    assert os.stat(out).st_mode & 0o777 == 0o666 & ~umask  # as readable as the config
    assert os.stat(out).st_mode & 0o777 == os.stat(config_path).st_mode & 0o777

    image = sorted(glob.glob(os.path.join(data_root, 'val', '*')))[0]
    script = tmp_path / 'plain_mmdet_test.py'
    script.write_text(PLAIN_MMDET)
    env = dict(os.environ, OMP_NUM_THREADS='1')
    run = subprocess.run(
        [sys.executable, str(script), config_path, out, str(tmp_path / 'work'), image],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
        env=env,
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
    assert 'PLAIN_MMDET_OK coco/bbox_mAP' in run.stdout
    assert 'DET_INFERENCER_OK' in run.stdout
