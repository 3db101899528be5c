"""The attention-map loss means the same at any number of keys, and the published weights
keep their effect at the published key counts."""

import pytest
import torch
import torch.nn.functional as F

from mmdet_detrdistill.models.components.pair_losses import ATTENTION_LOSSES
from mmdet_detrdistill.models.losses import AttentionMapDistillLoss


def _maps(bs=2, rows=5, keys=6, seed=0):
    """A student and a teacher map whose rows each sum to 1, (bs, rows, keys)."""
    g = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(bs, rows, keys, generator=g).mul(2).softmax(-1) for _ in range(2))


def _split_keys(attn, k):
    """Every key split into k keys that share its weight: rows still sum to 1."""
    return attn.repeat_interleave(k, dim=-1) / k


@pytest.mark.parametrize('k', [2, 3, 10])
@pytest.mark.parametrize('ref', [6, 300, 1050])
def test_same_loss_for_a_map_and_its_refinement(k, ref):
    loss = AttentionMapDistillLoss(loss_weight=1e3, ref_num_keys=ref)
    student, teacher = _maps()
    fine = loss(_split_keys(student, k), _split_keys(teacher, k))
    assert torch.allclose(_split_keys(student, k).sum(-1), torch.ones(2, 5))
    torch.testing.assert_close(fine, loss(student, teacher))


@pytest.mark.parametrize(
    'name, weight, keys', [('loss_self_attn', 1e4, 300), ('loss_cross_attn', 1e3, 1050)]
)
def test_published_weight_is_a_plain_mse_weight_at_the_reference_size(name, weight, keys):
    cfg = dict(ATTENTION_LOSSES[name])
    assert (cfg['loss_weight'], cfg['ref_num_keys']) == (weight, keys)
    loss = AttentionMapDistillLoss(cfg['loss_weight'], cfg['ref_num_keys'])
    student, teacher = _maps(rows=7, keys=keys, seed=1)
    torch.testing.assert_close(loss(student, teacher), weight * F.mse_loss(student, teacher))


def test_a_smaller_map_weighs_as_much_per_relative_error():
    """30 queries: the same relative error as at 300 gives the same loss (plain MSE: 100x less)."""
    loss = AttentionMapDistillLoss(loss_weight=1e4, ref_num_keys=300)
    uniform = {n: torch.full((1, n, n), 1.0 / n) for n in (30, 300)}
    tilt = {n: torch.linspace(-0.5, 0.5, n) for n in (30, 300)}  # relative error per key
    values = {n: loss(uniform[n] * (1 + tilt[n]), uniform[n]) for n in (30, 300)}
    torch.testing.assert_close(values[30], values[300], rtol=0.1, atol=0)


def test_zero_for_identical_maps_and_gradients_to_the_student_only():
    loss = AttentionMapDistillLoss(loss_weight=1e4, ref_num_keys=300)
    student, teacher = _maps()
    assert loss(teacher.clone(), teacher).item() == 0
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    loss(student, teacher).backward()
    assert student.grad is not None and student.grad.abs().sum() > 0
    assert teacher.grad is None


def test_reference_size_is_required_and_named():
    with pytest.raises(ValueError, match='ref_num_keys.*300 for self-attention.*1050'):
        AttentionMapDistillLoss(loss_weight=1e4)
