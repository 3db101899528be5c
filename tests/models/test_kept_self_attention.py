"""D3ETR's self-attention loss compares the maps among the kept (matched) queries, each
renormalised over them: maps that agree there give zero loss, whatever else either model
attends to (issue #32, item 4: a 900-query teacher against 300 student queries)."""

import pytest
import torch
from mmdet.registry import MODELS
from torch import nn

from mmdet_detrdistill.models.common import OWN_GROUP, DecoderOutputs, gather_square
from mmdet_detrdistill.models.components.pair_losses import ATTENTION_LOSSES, pair_losses
from mmdet_detrdistill.models.layers.attention_maps import renormalise_rows
from mmdet_detrdistill.models.layers.attention_records import AttentionWeights
from mmdet_detrdistill.models.layers.group_attention_blocks import group_blocks
from mmdet_detrdistill.models.losses import AttentionMapDistillLoss

BS = 2


def _rows(*shape, gen):
    """Random rows that sum to 1, shape (..., n)."""
    return torch.randn(*shape, generator=gen).mul(2).softmax(-1)


def _embed(block, idx, num_queries, gen):
    """A softmax-like map (BS, N, N) whose rows ``idx`` put a random share c_i < 1 (1 when
    every query is kept) of their weight on columns ``idx`` in the proportions of ``block``
    (BS, K, K), and the rest on the other columns; other rows are random."""
    attn = _rows(BS, num_queries, num_queries, gen=gen)
    k = idx.shape[1]
    for b in range(BS):
        others = [j for j in range(num_queries) if j not in idx[b].tolist()]
        share = 1.0 if not others else 0.2 + 0.7 * torch.rand(k, generator=gen)
        for i in range(k):
            row = torch.zeros(num_queries)
            row[idx[b]] = block[b, i] * (share if isinstance(share, float) else share[i])
            if others:
                row[others] = (1 - share[i]) * _rows(len(others), gen=gen)
            attn[b, idx[b, i]] = row
    return attn


def _outputs(attn):
    """Decoder outputs of one layer holding only a self-attention map (as one head's)."""
    n = attn.shape[-1]
    cls, box = torch.zeros(1, BS, n, 3), torch.full((1, BS, n, 4), 0.5)
    record = AttentionWeights(attn[:, None])  # (bs, 1 head, n, n)
    slices = {OWN_GROUP: slice(0, n)}
    blocks = group_blocks([record], slices, BS)
    return DecoderOutputs(cls, box, slices, own_queries=None, attn={'self': [blocks]})


def _self_attn_loss(s_attn, t_attn, s_idx, t_idx, **override):
    """The default self-attention loss (``override``: its arguments changed) over the pairs."""
    cfg = {**ATTENTION_LOSSES['loss_self_attn'], **override}
    loss_fns = nn.ModuleDict(dict(loss_self_attn=MODELS.build(cfg)))
    metas = [dict(img_shape=(64, 64))] * BS
    out = pair_losses(
        loss_fns, (s_idx, t_idx), (_outputs(s_attn), OWN_GROUP, 0), (_outputs(t_attn), 0), metas
    )
    return out['loss_self_attn']


def _pairs(num_student, num_teacher, num_kept, gen):
    s_idx = torch.stack([torch.randperm(num_student, generator=gen)[:num_kept] for _ in range(BS)])
    t_idx = torch.stack([torch.randperm(num_teacher, generator=gen)[:num_kept] for _ in range(BS)])
    return s_idx, t_idx


@pytest.mark.parametrize(
    'num_student, num_teacher, num_kept',
    [(3, 9, 3), (5, 9, 3), (6, 6, 4), (6, 6, 6), (9, 4, 4)],
)
def test_maps_that_agree_on_the_kept_queries_give_zero_loss(num_student, num_teacher, num_kept):
    gen = torch.Generator().manual_seed(num_student * 100 + num_teacher * 10 + num_kept)
    s_idx, t_idx = _pairs(num_student, num_teacher, num_kept, gen)
    agreed = _rows(BS, num_kept, num_kept, gen=gen)  # what both attend to among the kept
    student = _embed(agreed, s_idx, num_student, gen)
    for _ in range(3):  # whatever the teacher has besides
        teacher = _embed(agreed, t_idx, num_teacher, gen)
        loss = _self_attn_loss(student, teacher, s_idx, t_idx)
        assert loss.item() == pytest.approx(0.0, abs=1e-9)
    other = _embed(_rows(BS, num_kept, num_kept, gen=gen), t_idx, num_teacher, gen)
    assert _self_attn_loss(student, other, s_idx, t_idx).item() > 1e-6  # it can still see


def test_raw_blocks_the_ablation_keep_a_loss_that_agreement_cannot_remove():
    """``renormalise=False`` (the way before the fix, for its ablation): the same agreeing
    maps leave a loss when the teacher has more queries than pairs, none when all are kept."""
    gen = torch.Generator().manual_seed(7)
    s_idx, t_idx = _pairs(3, 9, 3, gen)
    agreed = _rows(BS, 3, 3, gen=gen)
    student, teacher = _embed(agreed, s_idx, 3, gen), _embed(agreed, t_idx, 9, gen)
    assert _self_attn_loss(student, teacher, s_idx, t_idx).item() == pytest.approx(0, abs=1e-9)
    assert _self_attn_loss(student, teacher, s_idx, t_idx, renormalise=False).item() > 1e-3
    s_idx, t_idx = _pairs(6, 6, 6, gen)
    agreed = _rows(BS, 6, 6, gen=gen)
    student, teacher = _embed(agreed, s_idx, 6, gen), _embed(agreed, t_idx, 6, gen)
    raw = _self_attn_loss(student, teacher, s_idx, t_idx, renormalise=False)
    assert raw.item() == pytest.approx(0, abs=1e-9)


def test_the_loss_alone_compares_maps_as_given_unless_asked_to_renormalise():
    """Cross-attention rows (every key) go in as they are; ``renormalise=True`` rescales rows."""
    gen = torch.Generator().manual_seed(3)
    a = _rows(BS, 4, 6, gen=gen)
    half = a / 2  # the same proportions, rows summing to 1/2
    plain = AttentionMapDistillLoss(loss_weight=1.0, ref_num_keys=6)
    assert plain(half, a).item() > 1e-4
    renorm = AttentionMapDistillLoss(loss_weight=1.0, ref_num_keys=6, renormalise=True)
    assert renorm(half, a).item() == pytest.approx(0, abs=1e-12)


def test_the_raw_block_of_a_larger_teacher_would_not_sum_to_one():
    """What the renormalisation repairs: 300 of 900 teacher keys hold ~1/3 of each row."""
    gen = torch.Generator().manual_seed(0)
    teacher = _rows(1, 900, 900, gen=gen)
    idx = torch.randperm(900, generator=gen)[:300][None]
    assert gather_square(teacher, idx).sum(-1).mean().item() == pytest.approx(1 / 3, abs=0.02)
    torch.testing.assert_close(
        renormalise_rows(gather_square(teacher, idx)).sum(-1), torch.ones(1, 300)
    )


def test_renormalisation_is_a_no_op_when_every_query_is_kept():
    gen = torch.Generator().manual_seed(1)
    attn = _rows(BS, 7, 7, gen=gen)
    idx = torch.stack([torch.randperm(7, generator=gen) for _ in range(BS)])
    block = gather_square(attn, idx)
    torch.testing.assert_close(renormalise_rows(block), block)


def test_a_row_without_weight_on_the_kept_queries_stays_zero_with_finite_gradients():
    block = torch.tensor([[[0.0, 0.0], [0.25, 0.5]]], requires_grad=True)
    out = renormalise_rows(block)
    torch.testing.assert_close(out, torch.tensor([[[0.0, 0.0], [1 / 3, 2 / 3]]]))
    out.square().sum().backward()
    assert torch.isfinite(block.grad).all()


def test_gradients_reach_the_student_map_through_the_renormalisation():
    gen = torch.Generator().manual_seed(2)
    s_idx, t_idx = _pairs(5, 9, 3, gen)
    student = _rows(BS, 5, 5, gen=gen).requires_grad_(True)
    teacher = _rows(BS, 9, 9, gen=gen).requires_grad_(True)
    _self_attn_loss(student, teacher, s_idx, t_idx).backward()
    assert student.grad.abs().sum() > 0 and torch.isfinite(student.grad).all()
    assert teacher.grad is None
