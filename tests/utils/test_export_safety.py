"""Export never writes code it was not given, and its outputs are safe to use (issue #30).

The config stored in a checkpoint is data: a key crafted to break out of mmengine's (unescaped)
key quoting, a ``_base_`` or a ``{{ }}`` marker must never reach the exported config; the
exported config does not point at the distiller's run directory; nothing is overwritten
without ``force``.
"""

import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch
from mmengine.config import Config

from mmdet_detrdistill.utils.export import export_student
from mmdet_detrdistill.utils.export_config import parse_config_text

REPO = Path(__file__).resolve().parents[2]
INJECTED_KEY = "x': __import__('os').system('touch PWNED'), 'y"
STUDENT = "dict(type='DeformableDETR', num_queries=100, backbone={backbone})"


def _cfg_text(backbone: str = "dict(type='ResNet', depth=18)", extra: str = '') -> str:
    """A stored distiller config, written by hand as a checkpoint could hold it."""
    student = STUDENT.format(backbone=backbone)
    return f"model = dict(type='DETRDistiller', student={student})\n{extra}"


def _ckpt(path: Path, cfg_text: str) -> Path:
    state = {'student.backbone.w': torch.ones(2), 'teacher.backbone.w': torch.zeros(2)}
    torch.save({'meta': {'cfg': cfg_text}, 'state_dict': state}, path)
    return path


def _written_py_files(root: Path) -> dict:
    return {p.name: p.read_text() for p in root.rglob('*.py')}


def _assert_loading_runs_nothing(config_path, cwd: Path, monkeypatch) -> None:
    """Loading the exported config (if any) the way mmdet does creates no marker file."""
    if config_path is not None:
        monkeypatch.chdir(cwd)
        Config.fromfile(config_path)
    assert not (cwd / 'PWNED').exists()


@pytest.mark.parametrize(
    'backbone',
    [
        f'{{{INJECTED_KEY!r}: 1, "type": "ResNet"}}',  # a dict of the student
        f'dict(type="ResNet", plugins=[{{{INJECTED_KEY!r}: 1}}])',  # a dict inside a list
    ],
)
def test_key_that_breaks_out_of_its_quotes_is_never_written(tmp_path, monkeypatch, backbone):
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text(backbone))
    assert repr(INJECTED_KEY) in repr(parse_config_text(_cfg_text(backbone)))  # literal-only
    out = tmp_path / 'out'
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter('always')
        exported, config_path = export_student(str(src), str(out / 'student.pth'))
    assert not [n for n, text in _written_py_files(out).items() if '__import__' in text]
    _assert_loading_runs_nothing(config_path, out, monkeypatch)
    assert config_path is None
    assert torch.load(exported, weights_only=True)['state_dict']['backbone.w'].sum() == 2
    message = '\n'.join(str(w.message) for w in caught)
    assert re.search(r"not a plain config: model\.backbone.*\[\"x'", message), message


def test_config_never_loads_another_file_named_by_the_checkpoint(tmp_path, monkeypatch):
    (tmp_path / 'evil.py').write_text("import os\nos.system('touch PWNED')\n")
    src = _ckpt(
        tmp_path / 'distill.pth', _cfg_text(extra=f'_base_ = {str(tmp_path / "evil.py")!r}\n')
    )
    with pytest.warns(UserWarning, match='_base_ .*would load and run other config files'):
        _, config_path = export_student(str(src), str(tmp_path / 'student.pth'))
    assert config_path is None
    assert not (tmp_path / 'student_config.py').exists()
    _assert_loading_runs_nothing(config_path, tmp_path, monkeypatch)


def test_config_with_mmengine_substitution_markers_is_not_written(tmp_path):
    backbone = "dict(type='ResNet', style='{{ fileDirname }}')"
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text(backbone))
    with pytest.warns(UserWarning, match=r"model\.backbone\.style holds '\{\{'"):
        _, config_path = export_student(str(src), str(tmp_path / 'student.pth'))
    assert config_path is None and not (tmp_path / 'student_config.py').exists()


def test_plain_quoted_keys_still_export_and_read_back(tmp_path):
    backbone = "dict(type='ResNet', plugins=[{'a-b': 1, 'c.d': (1, 2)}], init_cfg={'x y': None})"
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text(backbone))
    _, config_path = export_student(str(src), str(tmp_path / 'student.pth'))
    cfg = Config.fromfile(config_path)
    assert cfg.model.backbone.plugins[0]['a-b'] == 1
    assert cfg.model.backbone.plugins[0]['c.d'] == (1, 2)
    assert cfg.model.backbone.init_cfg['x y'] is None


def test_exported_config_does_not_point_at_the_distiller_run(tmp_path):
    extra = "work_dir = 'work_dirs/distill'\nload_from = 'teacher.pth'\nresume = True\n"
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text(extra=extra))
    _, config_path = export_student(str(src), str(tmp_path / 'student.pth'))
    text = Path(config_path).read_text()
    assert 'work_dir' not in text and 'work_dirs/distill' not in text
    cfg = Config.fromfile(config_path)
    assert 'work_dir' not in cfg  # mmdet's tools/train.py and test.py use their default
    assert cfg.load_from is None and cfg.resume is False


def test_directory_as_output_path_is_refused_and_nothing_written(tmp_path):
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text())
    (tmp_path / 'exports').mkdir()
    before = sorted(os.listdir(tmp_path))
    for out in (tmp_path / 'exports', f'{tmp_path / "new"}{os.sep}'):
        with pytest.raises(IsADirectoryError, match='is a directory; give the path of the'):
            export_student(str(src), str(out))
    assert sorted(os.listdir(tmp_path)) == before
    assert os.listdir(tmp_path / 'exports') == []


def test_existing_config_is_not_overwritten_without_force(tmp_path):
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text())
    out, config = tmp_path / 'student.pth', tmp_path / 'student_config.py'
    config.write_text('# my edited config\n')
    with pytest.raises(FileExistsError, match=r'student_config\.py.*--force') as info:
        export_student(str(src), str(out))
    assert 'student.pth' not in str(info.value)
    assert config.read_text() == '# my edited config\n'
    assert not out.exists()

    _, config_path = export_student(str(src), str(out), force=True)
    assert config_path == str(config) and 'DeformableDETR' in config.read_text()


def test_existing_checkpoint_is_not_overwritten_without_force(tmp_path):
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text())
    out = tmp_path / 'student.pth'
    out.write_bytes(b'an earlier export')
    with pytest.raises(FileExistsError, match=r"'.*student\.pth' already exists"):
        export_student(str(src), str(out))
    assert out.read_bytes() == b'an earlier export'
    assert not (tmp_path / 'student_config.py').exists()
    export_student(str(src), str(out), force=True)
    assert set(torch.load(out, weights_only=True)['state_dict']) == {'backbone.w'}


def test_forced_export_without_config_warns_about_the_earlier_config(tmp_path):
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text(f'{{{INJECTED_KEY!r}: 1}}'))
    config = tmp_path / 'student_config.py'
    config.write_text('# from an earlier export\n')
    with pytest.warns(UserWarning, match='left from an earlier export'):
        export_student(str(src), str(tmp_path / 'student.pth'), force=True)
    assert config.read_text() == '# from an earlier export\n'


def _cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(REPO / 'tools' / 'model_converters' / 'export_student.py'), *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.slow  # several CLI processes; the CLI itself is tested fast in test_export.py
def test_cli_refuses_to_overwrite_unless_force(tmp_path):
    src = _ckpt(tmp_path / 'distill.pth', _cfg_text())
    out = str(tmp_path / 'student.pth')
    assert _cli(str(src), out).returncode == 0
    (tmp_path / 'student_config.py').write_text('# edited\n')

    again = _cli(str(src), out)
    assert again.returncode == 1 and 'Traceback' not in again.stderr
    assert again.stderr.startswith('error: ') and '--force' in again.stderr
    assert len(again.stderr.strip().splitlines()) == 1
    assert (tmp_path / 'student_config.py').read_text() == '# edited\n'

    forced = _cli(str(src), out, '--force')
    assert forced.returncode == 0, forced.stderr
    assert 'DeformableDETR' in (tmp_path / 'student_config.py').read_text()

    directory = _cli(str(src), str(tmp_path))
    assert directory.returncode == 1 and directory.stderr.startswith('error: ')
    assert 'is a directory' in directory.stderr and 'Traceback' not in directory.stderr
    assert '--force' in _cli('--help').stdout
