"""``--resume`` continues *this* run (issue #30, item 3): in a work dir reused from an earlier
run, resume never jumps to a checkpoint of that run; the run id in each checkpoint's meta and
in the work dir's ``run_id`` file say which run a checkpoint belongs to."""

import logging
import os
import shutil
import zipfile

import pytest
import torch
from mmengine.hooks import Hook
from test_atomic_checkpoint_hook import StartRecorder, _pointer, _run  # same folder

from mmdet_detrdistill.engine import choose_resume_checkpoint
from mmdet_detrdistill.engine.run_identity import is_run_id, read_run_id_file

A, B = 'a' * 32, 'b' * 32  # run ids


class Killed(Exception):
    pass


class CrashBeforeFirstIter(Hook):
    """Dies before the first iteration (killed before the run saved any checkpoint)."""

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        raise Killed('killed before the first checkpoint')


def _meta(path) -> dict:
    return torch.load(path, map_location='cpu', weights_only=False)['meta']


def _run_id(work_dir) -> str:
    return (work_dir / 'run_id').read_text().strip()


def _log(runner) -> str:
    for handler in runner.logger.handlers:
        if isinstance(handler, logging.FileHandler):
            handler.flush()
            with open(handler.baseFilename) as f:
                return f.read()
    raise AssertionError('no log file')


def _truncate(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def reused(tmp_path):
    """An earlier run trained to iter_4; a new run (from scratch) saved iter_1 and iter_2 over
    its files, then was killed: iter_3 and iter_4 are the earlier run's."""
    _run(tmp_path, 4, resume=False)
    _run(tmp_path, 2, resume=False)
    assert _pointer(tmp_path) == 'iter_2.pth'
    return tmp_path


@pytest.mark.parametrize('earlier', ['other-run-id', 'no-run-id'])
def test_resume_continues_this_run_not_an_older_one(reused, earlier):
    if earlier == 'no-run-id':  # saved before run ids existed
        for name in ('iter_3.pth', 'iter_4.pth'):
            checkpoint = torch.load(reused / name, weights_only=False)
            checkpoint['meta'].pop('run_id', None)
            torch.save(checkpoint, reused / name)
    recorder = StartRecorder()
    runner = _run(reused, 4, extra_hooks=[recorder])
    assert recorder.start == 2  # not 4: the earlier run's iter_4 trains nothing
    assert f'Resuming from {reused / "iter_2.pth"}: named by last_checkpoint.' in _log(runner)
    this_run = _run_id(reused)
    assert [_meta(reused / f'iter_{i}.pth')['run_id'] for i in (1, 2, 3, 4)] == [this_run] * 4


@pytest.mark.parametrize('pointer', ['truncated', 'missing-file', 'no-pointer', 'elsewhere'])
def test_broken_pointer_falls_back_to_this_runs_newest_checkpoint(reused, pointer):
    last = reused / 'last_checkpoint'
    if pointer == 'truncated':
        _truncate(reused / 'iter_2.pth')
    elif pointer == 'missing-file':
        (reused / 'iter_2.pth').unlink()
    elif pointer == 'no-pointer':
        last.unlink()
    else:  # a complete checkpoint in another directory is not used
        (reused / 'elsewhere').mkdir()
        shutil.copy(reused / 'iter_4.pth', reused / 'elsewhere' / 'iter_4.pth')
        last.write_text(str(reused / 'elsewhere' / 'iter_4.pth'))
    start = 1 if pointer in ('truncated', 'missing-file') else 2
    recorder = StartRecorder()
    runner = _run(reused, 4, extra_hooks=[recorder])
    assert recorder.start == start  # this run's newest complete checkpoint, not iter_4
    log = _log(runner)
    assert f'Resuming from {reused / f"iter_{start}.pth"}: last_checkpoint ' in log
    assert 'the newest complete checkpoint of this run' in log


def test_new_run_killed_before_its_first_checkpoint_resumes_from_scratch(tmp_path):
    _run(tmp_path, 4, resume=False)
    with pytest.raises(Killed):
        _run(tmp_path, 4, extra_hooks=[CrashBeforeFirstIter()], resume=False)
    # the earlier run's pointer is set aside, not deleted; its checkpoints are kept
    stale = tmp_path / 'last_checkpoint.stale'
    assert not (tmp_path / 'last_checkpoint').exists() and stale.read_text().endswith('iter_4.pth')
    recorder = StartRecorder()
    runner = _run(tmp_path, 2, extra_hooks=[recorder])
    assert recorder.start == 0
    assert 'Training starts from scratch' in _log(runner)
    assert _pointer(tmp_path) == 'iter_2.pth' and (tmp_path / 'iter_4.pth').exists()


def test_run_id_is_recorded_and_kept_across_resume(tmp_path):
    _run(tmp_path, 2, resume=False)
    run_id = _run_id(tmp_path)
    assert is_run_id(run_id)
    assert [_meta(tmp_path / f'iter_{i}.pth')['run_id'] for i in (1, 2)] == [run_id] * 2
    _run(tmp_path, 3)  # resumed
    assert _run_id(tmp_path) == run_id and _meta(tmp_path / 'iter_3.pth')['run_id'] == run_id
    _run(tmp_path, 1, resume=False)  # a new run: a new id
    assert _run_id(tmp_path) != run_id == _meta(tmp_path / 'iter_2.pth')['run_id']
    assert _meta(tmp_path / 'iter_1.pth')['run_id'] == _run_id(tmp_path)


def test_garbage_run_id_file_is_ignored_with_a_warning(reused):
    # as a path it would name the earlier run's checkpoint: it must not be used as one
    (reused / 'run_id').write_text(str(reused / 'iter_4.pth'))
    recorder = StartRecorder()
    runner = _run(reused, 4, extra_hooks=[recorder])
    assert recorder.start == 2  # named by last_checkpoint
    assert f'Ignored {reused / "run_id"}: ' in _log(runner) and 'not a run id' in _log(runner)
    this_run = _meta(reused / 'iter_2.pth')['run_id']
    assert _run_id(reused) == this_run  # the id of the resumed checkpoint, written back


@pytest.mark.parametrize(
    'content', [b'', b'A' * 32, b'a' * 31, b'a' * 32 + b'\nb', b'\xff' * 32, b'a' * 10000]
)
def test_read_run_id_file_accepts_only_an_id(tmp_path, content):
    path = tmp_path / 'run_id'
    path.write_bytes(content)
    with pytest.raises(ValueError):
        read_run_id_file(str(path))
    path.write_text(A + '\n')
    assert read_run_id_file(str(path)) == A
    assert read_run_id_file(str(tmp_path / 'absent')) is None


def _choose(tmp_path, ids, named, run_id, broken=()):
    """choose_resume_checkpoint over fake checkpoints ``iter_N.pth`` (step: run id)."""
    for step in ids:
        with zipfile.ZipFile(tmp_path / f'iter_{step}.pth', 'w') as archive:
            archive.writestr('data.pkl', b'')
    for step in broken:
        (tmp_path / f'iter_{step}.pth').write_bytes(b'truncated')
    warnings = []

    def read(path):
        step = int(os.path.basename(path)[5:-4])
        if ids[step] == 'unreadable':
            raise ValueError('cannot read')
        return ids[step]

    named = None if named is None else str(tmp_path / f'iter_{named}.pth')
    choice = choose_resume_checkpoint(
        str(tmp_path), 'iter_{}.pth', named, run_id, warnings.append, read_run_id=read
    )
    path = choice.path and int(os.path.basename(choice.path)[5:-4])
    return path, choice.reason, warnings


@pytest.mark.parametrize(
    'ids, named, run_id, broken, expected',
    [
        ({10: B, 40: A}, 10, B, (), 10),  # the case
        ({10: B, 40: None}, 10, B, (), 10),  # an earlier run without run ids
        ({10: B, 11: B, 40: A}, 10, B, (), 11),  # killed before last_checkpoint was updated
        ({9: B, 40: A}, 10, B, (10,), 9),  # named file truncated
        ({9: B, 40: A}, 12, B, (), 9),  # named file missing
        ({9: B, 10: 'unreadable', 40: A}, 10, B, (), 9),  # named file unreadable
        ({40: A}, 40, B, (), None),  # named: another run's: scratch
        ({9: B, 40: A}, None, B, (), 9),  # no pointer
        ({9: B, 40: A}, None, None, (), 40),  # no run id in the work dir: as before run ids
        ({9: None, 10: None}, 9, None, (), 9),  # a work dir from before run ids
        ({10: A, 11: A}, 10, None, (), 11),  # no run id file: the named checkpoint's run
        ({}, None, B, (), None),  # nothing saved yet
    ],
)
def test_choice_rule(tmp_path, ids, named, run_id, broken, expected):
    chosen, reason, warnings = _choose(tmp_path, ids, named, run_id, broken)
    assert chosen == expected, reason
    assert bool(warnings) == ('unreadable' in ids.values())
