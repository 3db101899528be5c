"""tools/analysis_tools/benchmark_accuracy.py: log parsing, the summary table, its options."""

import statistics
import sys

import pytest
from benchmark_accuracy import evaluations, summary_table

pytestmark = pytest.mark.slow  # trains tiny studies

METRICS = ('bbox_mAP', 'bbox_mAP_50', 'bbox_mAP_75', 'bbox_mAP_s', 'bbox_mAP_m', 'bbox_mAP_l')


def _metrics(ap: float) -> dict:
    return {k: (-1.0 if k == 'bbox_mAP_l' else ap) for k in METRICS}


def test_evaluations_reads_every_validation_by_iteration(tmp_path):
    log = tmp_path / 'run.log'
    log.write_text(
        'Iter(train) [ 50/100]  lr: 1e-4  loss: 3.0\n'
        'Iter(val) [1/1]    coco/bbox_mAP: 0.0120  coco/bbox_mAP_50: 0.0400  data_time: 0.1\n'
        'Iter(train) [100/100]  lr: 1e-4  loss: 2.0\n'
        'Iter(val) [1/1]    coco/bbox_mAP: 0.0250  coco/bbox_mAP_50: -1.0000\n'
    )
    assert evaluations(str(log), val_interval=50) == {
        50: {'bbox_mAP': 0.012, 'bbox_mAP_50': 0.04},
        100: {'bbox_mAP': 0.025, 'bbox_mAP_50': -1.0},
    }


def _log(path, max_iters: int, val_interval: int, log_interval: int = 50) -> str:
    """A log as mmengine writes it: train lines every log_interval, validations every
    val_interval and after the last iteration."""
    lines = []
    for it in range(1, max_iters + 1):
        if it % log_interval == 0:
            lines.append(f'Iter(train) [{it:3d}/{max_iters}]  loss: 1.0')
        if it % val_interval == 0 or it == max_iters:
            lines.append(f'Iter(val) [1/1]    coco/bbox_mAP: {it / 1000:.4f}')
    path.write_text('\n'.join(lines) + '\n')
    return str(path)


def test_validations_between_train_log_lines_get_their_own_iteration(tmp_path):
    """Validation every 125 with train lines every 50: 125, 250, 375, 500 (not the last train
    line's 100 and 350); a last validation off the interval is at max_iters."""
    found = evaluations(_log(tmp_path / 'a.log', 500, 125), val_interval=125)
    assert {it: m['bbox_mAP'] for it, m in found.items()} == {
        it: it / 1000 for it in (125, 250, 375, 500)
    }
    found = evaluations(_log(tmp_path / 'b.log', 500, 150), val_interval=150)
    assert {it: m['bbox_mAP'] for it, m in found.items()} == {
        it: it / 1000 for it in (150, 300, 450, 500)
    }


def test_summary_table_rows_and_gain_over_baseline():
    runs = {
        'conditional': {
            'baseline': {0: {5: _metrics(0.01), 10: _metrics(0.02)}, 1: {10: _metrics(0.04)}},
            'D3ETR': {0: {5: _metrics(0.02), 10: _metrics(0.05)}, 1: {10: _metrics(0.05)}},
        }
    }
    teachers = {'conditional': {'metrics': {'bbox_mAP': 0.1}}}
    table = summary_table(runs, teachers, short=5, long=10, seeds=[0, 1]).splitlines()
    rows = [[c.strip() for c in r.strip('|').split('|')] for r in table[2:]]
    assert [r[:3] for r in rows] == [
        ['conditional', 'baseline', '5'],
        ['conditional', 'D3ETR', '5'],
        ['conditional', 'baseline', '10'],
        ['conditional', 'D3ETR', '10'],
    ]
    assert all(len(r) == len(table[0].strip('|').split('|')) for r in rows)
    assert rows[0][3] == '1.0' and rows[1][3] == '2.0'  # short: seed 1 has no evaluation there
    assert rows[2][3] == f'3.0 ± {100 * statistics.stdev([0.02, 0.04]):.1f}'
    assert rows[2][8] == 'n/a'  # AP_l
    assert rows[0][9] == rows[2][9] == '—'  # no gain for the baseline itself
    assert rows[1][9] == '+1.0' and rows[3][9] == '+2.0'
    assert all(r[10] == '10.0' for r in rows)


def test_variants_parse_and_bad_ones_say_the_form(monkeypatch, capsys):
    """``--variant METHOD LABEL KEY=VALUE ...`` adds a student; a malformed one is refused with
    the expected form; ``--methods`` with no name leaves the baseline and the variants."""
    from benchmark_accuracy import parse_args

    argv = ['x', '--methods', '--variant', 'd3etr', 'top10', 'model.matcher.teacher_topk=10']
    monkeypatch.setattr(sys, 'argv', argv)
    args = parse_args()
    assert args.methods == [] and args.variant == [['d3etr', 'top10', argv[-1]]]
    assert not args.skip_baseline
    monkeypatch.setattr(sys, 'argv', ['x', '--methods', 'oddetr', '--skip-baseline'])
    assert parse_args().skip_baseline
    for bad in (['d3etr', 'top10'], ['nope', 'x', 'a=1'], ['d3etr', 'x', 'no-equals']):
        monkeypatch.setattr(sys, 'argv', ['x', '--variant', *bad])
        with pytest.raises(SystemExit):
            parse_args()
        assert 'expected METHOD LABEL KEY=VALUE' in capsys.readouterr().err


def test_summary_table_shows_the_ema_model_where_every_seed_reports_one():
    """OD-DETR's rows carry its EMA model's AP (mean over seeds); a run without one shows '—'."""
    with_ema = {**_metrics(0.02), 'ema/bbox_mAP': 0.03}
    runs = {
        'conditional': {
            'baseline': {0: {10: _metrics(0.01)}, 1: {10: _metrics(0.01)}},
            'OD-DETR': {0: {10: with_ema}, 1: {10: {**with_ema, 'ema/bbox_mAP': 0.05}}},
        }
    }
    teachers = {'conditional': {'metrics': {'bbox_mAP': 0.1}}}
    table = summary_table(runs, teachers, short=5, long=10, seeds=[0, 1]).splitlines()
    assert table[0].strip('|').split('|')[-1].strip() == 'AP (EMA model)'
    cells = [[c.strip() for c in r.strip('|').split('|')] for r in table[2:]]
    rows = {r[1]: r for r in cells}  # the long schedule's row, the later of each student's
    assert rows['baseline'][-1] == '—'
    assert rows['OD-DETR'][-1] == f'4.0 ± {100 * statistics.stdev([0.03, 0.05]):.1f}'
    assert rows['OD-DETR'][3] == '2.0 ± 0.0'  # the student's own AP stays in the AP column


def test_dataset_option_picks_the_data_root_and_the_note_names_the_scenes_version(
    tmp_path, monkeypatch
):
    """``--dataset clutter`` defaults to the clutter scenes' root; the table's note reads the
    scenes version from the dataset's manifest (none for a dataset without one)."""
    import json

    from benchmark_accuracy import _version, parse_args

    monkeypatch.setattr(sys, 'argv', ['x', '--dataset', 'clutter'])
    args = parse_args()
    assert args.dataset == 'clutter' and args.data_root is None
    (tmp_path / 'manifest.json').write_text(json.dumps({'params': {'style_version': 3}}))
    assert _version(str(tmp_path)) == ', scenes version 3'
    assert _version(str(tmp_path / 'missing')) == ''


def test_a_pairing_across_families_takes_only_the_methods_that_have_a_config_for_it(
    monkeypatch, capsys
):
    """``--families dino-deformable`` (a 90-query DINO teacher, a 30-query Deformable DETR
    student) runs D3ETR and its variants; asking for another method says which to pass."""
    from benchmark_accuracy import parse_args

    from mmdet_detrdistill.testing.demo_runs import METHODS, PAIRINGS

    argv = ['x', '--families', 'dino-deformable', '--methods', 'd3etr']
    monkeypatch.setattr(sys, 'argv', argv + ['--variant', 'd3etr', 'raw', 'a=1'])
    assert parse_args().families == ['dino-deformable']
    for extra in ([], ['--variant', 'oddetr', 'x', 'a=1']):
        monkeypatch.setattr(sys, 'argv', ['x', '--families', 'dino-deformable', *extra])
        with pytest.raises(SystemExit):
            parse_args()
        err = capsys.readouterr().err
        assert 'no config of' in err and '--methods d3etr' in err
    teacher, student = PAIRINGS['dino-deformable']
    assert 'dino' in teacher and 'deformable' in student
    assert 'dino-deformable' in METHODS['d3etr'][2]


@pytest.mark.parametrize(
    'methods, trains_teacher',
    [(['oddetr'], False), ([], False), (['d3etr'], True), (['--skip-baseline'], True)],
)
def test_a_call_trains_the_teacher_only_when_a_student_needs_it(
    tmp_path, monkeypatch, methods, trains_teacher
):
    """The baseline and OD-DETR learn from no trained teacher: a call with only them leaves the
    teacher alone (another process may be training it), and its table says 'n/a' until the
    teacher exists; a call with D3ETR, or one that asks for the teacher only, trains it."""
    import benchmark_accuracy

    trained = []

    def fake_run_stage(stage, work_dir, seed, data_root):
        trained.append(stage.name)
        return {'checkpoint': 't.pth', 'metrics': {'bbox_mAP': 0.5}}

    monkeypatch.setattr(benchmark_accuracy, 'run_stage', fake_run_stage)
    monkeypatch.setattr(benchmark_accuracy, 'prepare_dataset', lambda *a: str(tmp_path))
    monkeypatch.setattr(benchmark_accuracy, 'evaluations', lambda *a: {})
    monkeypatch.setattr(benchmark_accuracy, 'plot', lambda *a: None)
    monkeypatch.chdir(tmp_path)
    work_dir = tmp_path / 'study'
    argv = ['x', '--families', 'deformable', '--seeds', '0', '--work-dir', str(work_dir)]
    monkeypatch.setattr(sys, 'argv', argv + ['--methods', *methods])
    benchmark_accuracy.main()
    assert ('teacher' in trained) == trains_teacher
    if trained and trained[0] == 'teacher':
        assert trained.count('teacher') == 1
    students = [name for name in trained if name != 'teacher']
    assert all(name.endswith('_seed0') for name in students)
    rows = [r for r in (work_dir / 'accuracy.md').read_text().splitlines() if r.startswith('| def')]
    assert {r.split(' | ')[-2] for r in rows} <= {'50.0' if trains_teacher else 'n/a'}
    assert len(rows) == 2 * len(students)
