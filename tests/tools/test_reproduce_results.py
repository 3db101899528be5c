"""`tools/analysis_tools/reproduce_results.py` runs every command of docs/reports/, in order."""

import os.path as osp
from typing import List

import pytest
import reproduce_results as rr

from mmdet_detrdistill.testing import REPO_ROOT as ROOT

pytestmark = pytest.mark.slow  # runs reproduction steps


def test_every_step_runs_tools_and_configs_that_exist():
    """The step list is the tool's own: each step's tools and configs must exist."""
    for step in rr.STEPS:
        for word in step.command.split():
            if word.endswith('.py') and '*' not in word and '{' not in word:
                assert osp.isfile(osp.join(ROOT, word)), f'{step.name}: {word} does not exist'


def test_step_names_are_unique_and_the_data_step_comes_first():
    names = [s.name for s in rr.STEPS]
    assert len(names) == len(set(names))
    assert rr.STEPS[0] is rr.DATA


def test_an_unknown_step_is_named_with_the_steps_there_are():
    with pytest.raises(SystemExit, match=r'no step named cost-9000; the steps are: data, demo'):
        rr.main(['--only', 'cost-9000'])


def test_only_keeps_the_order_and_the_dataset_step():
    chosen = rr.select(rr.STEPS, ['cost-800', 'demo'])
    assert [s.name for s in chosen] == ['data', 'demo', 'cost-800']


def test_list_prints_every_step(capsys):
    assert rr.main(['--list']) == 0
    out = capsys.readouterr().out
    for step in rr.STEPS:
        assert step.name in out and step.command in out


def _steps(tmp_path, *commands: str) -> List[rr.Step]:
    return [rr.Step(f's{i}', 't', c.format(tmp=tmp_path), '-') for i, c in enumerate(commands)]


def test_steps_run_in_order_and_a_failure_stops_the_run(tmp_path, capsys):
    steps = _steps(
        tmp_path, 'echo one >> {tmp}/order', 'echo bad; exit 3', 'echo three >> {tmp}/order'
    )
    assert rr.run_steps(steps, str(tmp_path / 'logs')) == 1
    assert (tmp_path / 'order').read_text() == 'one\n'
    assert 'bad' in (tmp_path / 'logs' / 's1.log').read_text()
    out = capsys.readouterr().out
    assert 'FAILED (exit 3)' in out and 'Stopped at s1' in out


def test_keep_going_runs_the_rest_and_still_fails(tmp_path):
    steps = _steps(tmp_path, 'exit 1', 'echo three >> {tmp}/order')
    assert rr.run_steps(steps, str(tmp_path / 'logs'), keep_going=True) == 1
    assert (tmp_path / 'order').read_text() == 'three\n'


def test_all_steps_succeeding_is_success(tmp_path):
    assert rr.run_steps(_steps(tmp_path, 'true', 'true'), str(tmp_path / 'logs')) == 0
