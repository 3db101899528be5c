"""Testing a distiller config needs no teacher file: with a plain student checkpoint (our
``tools/test.py``) or a distiller checkpoint (a plain Runner, as mmdet's ``tools/test.py``)."""

import re
import textwrap

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.testing import REPO_ROOT, run_tool, synth_train_options

CONFIG = 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'
NO_TEACHER = ['model.teacher_ckpt=/nowhere/teacher.pth', 'model.allow_untrained_teacher=False']

# what mmdet's tools/test.py does with a config and a checkpoint (the plugin via custom_imports)
PLAIN_RUNNER = textwrap.dedent(
    """
    import sys
    from mmengine.config import Config, DictAction
    from mmengine.runner import Runner
    config, ckpt, work_dir, *options = sys.argv[1:]
    cfg = Config.fromfile(config)
    options = [o.split('=', 1) for o in options]
    cfg.merge_from_dict({k: DictAction._parse_iterable(v) for k, v in options})
    cfg.work_dir, cfg.load_from = work_dir, ckpt
    Runner.from_cfg(cfg).test()
    """
)


@pytest.fixture(scope='module')
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('synth')
    make_synthetic_coco(str(root), 4, 4, img_size=96, verbose=False)
    return root


def _test_options(data_root):
    return [o for o in synth_train_options(data_root, 1) if 'data' in o or 'evaluator' in o]


def _map(output):
    found = re.findall(r'coco/bbox_mAP: (-?[\d.]+)', output)
    assert found, output[-3000:]
    return found[-1]


@pytest.mark.slow
def test_distiller_config_tests_without_the_teacher_file(data_root, tmp_path):
    torch.manual_seed(3)
    cfg = Config.fromfile(f'{REPO_ROOT}/{CONFIG}')
    student = MODELS.build(cfg.model.student)
    student.init_weights()
    plain = {'meta': {}, 'state_dict': student.state_dict()}
    torch.save(plain, tmp_path / 'student.pth')
    prefixed = {f'student.{k}': v for k, v in student.state_dict().items()}
    torch.save({'meta': {}, 'state_dict': prefixed}, tmp_path / 'distill.pth')
    options = _test_options(data_root) + NO_TEACHER

    ours = run_tool(
        ['tools/test.py', CONFIG, str(tmp_path / 'student.pth'), '--work-dir', str(tmp_path / 'a')],
        options,
        timeout=300,
    )
    assert ours.returncode == 0, ours.stdout[-2000:] + ours.stderr[-3000:]
    n = len(plain['state_dict'])
    assert f'{n} of the {n} student tensors loaded' in ours.stdout + ours.stderr

    (tmp_path / 'plain_runner.py').write_text(PLAIN_RUNNER)
    theirs = run_tool(
        [
            str(tmp_path / 'plain_runner.py'),
            CONFIG,
            str(tmp_path / 'distill.pth'),
            str(tmp_path / 'b'),
            *options,
        ],
        timeout=300,
    )
    assert theirs.returncode == 0, theirs.stdout[-2000:] + theirs.stderr[-3000:]
    # the same student weights, the same predictions
    assert _map(ours.stdout + ours.stderr) == _map(theirs.stdout + theirs.stderr)
