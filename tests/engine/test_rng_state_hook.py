"""RNGStateHook in one process: what a checkpoint holds, what a resume restores."""

from types import SimpleNamespace

import torch

from mmdet_detrdistill.engine import RNGStateHook


def _saved_then_next_draw(runner):
    hook = RNGStateHook()
    hook.before_save_checkpoint_all_ranks(runner)
    checkpoint = {'meta': {}}
    hook.before_save_checkpoint(runner, checkpoint)
    return checkpoint, torch.rand(4)


def test_resume_restores_state_and_load_from_keeps_fresh_seed():
    runner = SimpleNamespace(iter=3, logger=None)  # no warning expected: logger unused
    checkpoint, expected = _saved_then_next_draw(runner)
    assert len(checkpoint['meta']['torch_rng_state']['ranks']) == 1
    torch.rand(7)
    hook = RNGStateHook()
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train_iter(runner, batch_idx=0)
    assert torch.equal(torch.rand(4), expected)

    torch.manual_seed(5)
    fresh = torch.rand(4)
    torch.manual_seed(5)
    hook.after_load_checkpoint(runner, checkpoint)
    hook.before_train_iter(SimpleNamespace(iter=0), batch_idx=0)  # load_from: iteration 0
    assert torch.equal(torch.rand(4), fresh)


def test_checkpoint_of_the_single_state_format_still_resumes():
    """Checkpoints written before per-rank states: ``dict(cpu=..., cuda=[one per device])``."""
    state = torch.get_rng_state()
    expected = torch.rand(4)
    old = {'meta': {'torch_rng_state': dict(cpu=state, cuda=[])}}
    runner = SimpleNamespace(iter=3, logger=None)
    hook = RNGStateHook()
    hook.after_load_checkpoint(runner, old)
    hook.before_train_iter(runner, batch_idx=0)
    assert torch.equal(torch.rand(4), expected)
