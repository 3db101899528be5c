"""The embedded default runs every method end to end for every family (``--quick``).

Conditional DETR, the default family, is run by .ci/run itself."""

import json
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
from run_demo import results_table  # noqa: E402

# method -> (results row, a loss its log must name)
METHODS = {
    'd3etr': ('D3ETR student', 'd3etr.fixed.d1.loss_cross_attn'),
    'detrdistill': ('DETRDistill student', 'detrdistill.query_prior.d1.loss_iou'),
    'oddetr': ('OD-DETR student', 'layer_match_instability'),
}


@pytest.mark.parametrize('family', ['dab', 'deformable', 'dino'])
def test_quick_demo_runs_each_family(family, tmp_path):
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'run_demo.py'),
        '--quick',
        '--family',
        family,
        '--work-dir',
        str(tmp_path),
        '--data-root',
        str(tmp_path / 'data'),
        '--method',
        *METHODS,
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '| D3ETR student |' in run.stdout
    with open(tmp_path / 'results.json') as f:
        records = json.load(f)
    assert set(records) == {'teacher', 'baseline student'} | {row for row, _ in METHODS.values()}
    assert all('bbox_mAP' in r['metrics'] for r in records.values())
    for method, (_, logged_loss) in METHODS.items():
        with open(tmp_path / f'{method}.log') as f:
            assert logged_loss in f.read(), method


def test_results_table_names_each_stages_threads():
    """Stages may be reused from runs with other thread counts: each row says its own."""
    metrics = dict(bbox_mAP=0.038, bbox_mAP_50=0.129, bbox_mAP_75=0.012, bbox_mAP_s=0.026)
    stage = dict(config='c.py', iters=10)
    records = {
        'teacher': dict(metrics=metrics, stage=stage, train_time_s=474.0, threads='default'),
        'one': dict(metrics=metrics, stage=stage, train_time_s=60.0, threads='1'),
        'old': dict(metrics=metrics, stage=stage, train_time_s=60.0),  # record before threads
    }
    rows = results_table(records).splitlines()
    assert rows[2].endswith('| 3.8 | 12.9 | 1.2 | 2.6 | n/a | 7.9 min |')
    assert rows[3].endswith('| 1.0 min (1 thread) |')
    assert rows[4].endswith('| 1.0 min |')


def test_a_finished_stage_is_reused_until_its_config_changes(tmp_path, monkeypatch):
    """Editing a config (or the teacher config it names) retrains; stale results are not reused."""
    import run_demo

    trained = []

    def fake_train(cmd, stage, log_file):
        trained.append(stage.name)
        return dict(bbox_mAP=0.1)

    monkeypatch.setattr(run_demo, '_train_with_progress', fake_train)
    teacher = tmp_path / 'teacher.py'
    teacher.write_text('model = dict(type="T", depth=18)\n')
    base = tmp_path / 'base.py'
    base.write_text('lr = 1e-4\n')
    config = tmp_path / 'student.py'
    config.write_text(f'_base_ = "./base.py"\nmodel = dict(type="S", teacher="{teacher}")\n')
    stage = run_demo.Stage('s', str(config), 10, [])

    def run() -> None:
        run_demo.run_stage(stage, str(tmp_path / 'runs'), 0, 'data')

    run()
    run()
    assert trained == ['s'], 'an unchanged stage must be reused'
    base.write_text('lr = 2e-4\n')  # a base the config inherits from
    run()
    assert trained == ['s', 's']
    teacher.write_text('model = dict(type="T", depth=50)\n')  # the teacher config it names
    run()
    run()
    assert trained == ['s', 's', 's']


def test_config_digest_reads_a_teacher_named_as_mmdet_config(tmp_path):
    """A teacher given as 'mmdet::...' is resolved as the distiller resolves it."""
    from run_demo import config_digest

    digests = []
    for teacher in ('conditional_detr/conditional-detr', 'dab_detr/dab-detr'):
        config = tmp_path / 'distiller.py'
        config.write_text(
            f'model = dict(type="S", teacher="mmdet::{teacher}_r50_8xb2-50e_coco.py")\n'
        )
        digests.append(config_digest(str(config)))
    assert digests[0] != digests[1]
