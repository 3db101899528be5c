"""mmdet_detrdistill.testing.demo_runs: the embedded default's stages, their reuse and tables."""

import statistics

import pytest

from mmdet_detrdistill.testing import demo_runs
from mmdet_detrdistill.testing.demo_runs import config_digest, results_table, spread


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
    trained = []

    def fake_train(cmd, stage, log_file):
        trained.append(stage.name)
        return dict(bbox_mAP=0.1)

    monkeypatch.setattr(demo_runs, '_train_with_progress', fake_train)
    teacher = tmp_path / 'teacher.py'
    teacher.write_text('model = dict(type="T", depth=18)\n')
    base = tmp_path / 'base.py'
    base.write_text('lr = 1e-4\n')
    config = tmp_path / 'student.py'
    config.write_text(f'_base_ = "./base.py"\nmodel = dict(type="S", teacher="{teacher}")\n')
    stage = demo_runs.Stage('s', str(config), 10, [])

    def run() -> None:
        demo_runs.run_stage(stage, str(tmp_path / 'runs'), 0, 'data')

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
    digests = []
    for teacher in ('conditional_detr/conditional-detr', 'dab_detr/dab-detr'):
        config = tmp_path / 'distiller.py'
        config.write_text(
            f'model = dict(type="S", teacher="mmdet::{teacher}_r50_8xb2-50e_coco.py")\n'
        )
        digests.append(config_digest(str(config)))
    assert digests[0] != digests[1]


def test_config_digest_does_not_depend_on_where_the_checkout_lies(tmp_path):
    """Two copies of a config tree whose distiller names its teacher by ``{{fileDirname}}``
    (an absolute path once loaded) give one digest; a changed teacher still changes it."""
    digests = []
    for copy in ('a', 'b/deeper'):
        root = tmp_path / copy / 'configs'
        (root / 'method').mkdir(parents=True)
        (root / 'embedded').mkdir()
        (root / 'embedded' / 'teacher.py').write_text('model = dict(type="T", depth=18)\n')
        config = root / 'method' / 'distiller.py'
        config.write_text(
            'model = dict(type="S", teacher="{{fileDirname}}/../embedded/teacher.py")\n'
        )
        digests.append(config_digest(str(config)))
    assert digests[0] == digests[1]
    (root / 'embedded' / 'teacher.py').write_text('model = dict(type="T", depth=50)\n')
    assert config_digest(str(config)) != digests[0]


def test_spread_is_mean_and_sample_std_in_points():
    assert spread([0.01, 0.03]) == f'2.0 ± {100 * statistics.stdev([0.01, 0.03]):.1f}'
    assert spread([0.025]) == '2.5'  # one seed: no spread is claimed
    assert spread([0.02, -1.0]) == 'n/a'  # COCO's -1: no object of that size
    assert spread([]) == 'n/a'


@pytest.mark.parametrize('values', [[0.0, 0.0], [0.031, 0.031, 0.031]])
def test_equal_seeds_have_zero_spread(values):
    assert spread(values).endswith('± 0.0')


def test_coco_metrics_keep_the_students_and_the_emas_apart():
    """OD-DETR's validation line holds ``coco/*`` then ``ema/coco/*``: neither overwrites the
    other."""
    line = (
        'Iter(val) [1/1]    coco/bbox_mAP: 0.0120  coco/bbox_mAP_50: 0.0400  '
        'ema/coco/bbox_mAP: 0.0300  ema/coco/bbox_mAP_50: -1.0000  data_time: 0.1'
    )
    assert demo_runs.coco_metrics(line) == {
        'bbox_mAP': 0.012,
        'bbox_mAP_50': 0.04,
        'ema/bbox_mAP': 0.03,
        'ema/bbox_mAP_50': -1.0,
    }
    assert demo_runs.coco_metrics('Iter(train) [1/2]  loss: 1.0') == {}
