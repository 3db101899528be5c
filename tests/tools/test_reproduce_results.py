"""`tools/reproduce_results.py` runs the README's own result commands, all of them, in order."""

import os.path as osp
import re
import sys
from typing import List

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
sys.path.insert(0, osp.join(ROOT, 'tools'))
import reproduce_results as rr  # noqa: E402


def _results_section() -> str:
    with open(osp.join(ROOT, 'README.md')) as f:
        readme = f.read()
    start = readme.index('\n## Results\n')
    end = readme.index('\n## ', start + 1)
    return readme[start:end]


def _flat(text: str) -> str:
    return ' '.join(text.split())


def _fenced_commands(section: str) -> List[str]:
    """Each command of the section's ```bash blocks (continuation lines joined)."""
    commands = []
    for block in re.findall(r'```bash\n(.*?)```', section, flags=re.S):
        for cmd in block.replace('\\\n', ' ').splitlines():
            cmd = _flat(cmd.split(' #')[0])
            if cmd and not cmd.startswith('#'):
                commands.append(cmd)
    return commands


def _table_commands(section: str) -> List[str]:
    """The `command` column of the section's tables."""
    commands, column = [], None
    for line in section.splitlines():
        if not line.startswith('|'):
            column = None
            continue
        cells = [c.strip() for c in line.strip('|').split('|')]
        if column is None:
            column = cells.index('command') if 'command' in cells else -1
        elif column >= 0 and not set(cells[0]) <= {'-'}:
            commands.append(cells[column].strip('`'))
    return commands


def test_every_step_is_a_command_the_readme_prints():
    section = _flat(_results_section().replace('\\\n', ' '))
    for step in rr.STEPS:
        assert _flat(step.command) in section, f'{step.name}: README does not print {step.command}'


def test_every_results_command_of_the_readme_is_a_step():
    found = _fenced_commands(_results_section()) + _table_commands(_results_section())
    assert len(found) >= 8, found  # the parsers see the README's blocks and table
    steps = {_flat(s.command) for s in rr.STEPS}
    missing = [c for c in found if c not in steps]
    assert not missing, f'README results commands that reproduce_results.py does not run: {missing}'


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
