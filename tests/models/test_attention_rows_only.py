"""D3ETR's attention losses formed from the kept queries' rows equal the full-map formula.

The recorder keeps what rows of a map need (``layers/attention_records.py``), and the losses
form only the rows (and, for self-attention, the K x K block) of the matched queries. The
reference here is the formula it replaces, written out: the full head-averaged map, its rows
(and columns) gathered, renormalised over the kept keys (self-attention), MSE. Loss and the
student's gradients must agree, with a teacher of more queries than pairs (12 -> 5 kept), and
nothing the size of a full map may be kept for the backward pass.
"""

import pytest
import torch
import torch.nn.functional as F
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.layers.transformer.utils import ConditionalAttention
from mmdet.registry import MODELS
from torch import nn

from mmdet_detrdistill.models.common import OWN_GROUP, DecoderOutputs, gather_queries, gather_square
from mmdet_detrdistill.models.components.pair_losses import ATTENTION_LOSSES, pair_losses
from mmdet_detrdistill.models.layers import AttentionRecorder, group_blocks
from mmdet_detrdistill.models.layers.attention_maps import (
    deformable_sampling,
    density_grid,
    splat_density,
)
from mmdet_detrdistill.models.layers.attention_records import AttentionWeights, QueryKeyProduct

BS, DIM, HEADS = 2, 16, 4
N_LEAD, N_STUDENT, N_TEACHER, K = 3, 8, 12, 5  # student axis: [lead (3) | own (8)]
N_KEYS = 20  # cross-attention memory
STUDENT_SLICE = slice(N_LEAD, N_LEAD + N_STUDENT)
CLOSE = dict(rtol=1e-6, atol=1e-10)  # float64 modules; the loss renormalises in float32


def _pairs(seed):
    gen = torch.Generator().manual_seed(seed)
    s_idx = torch.stack([torch.randperm(N_STUDENT, generator=gen)[:K] for _ in range(BS)])
    t_idx = torch.stack([torch.randperm(N_TEACHER, generator=gen)[:K] for _ in range(BS)])
    return s_idx, t_idx


def _outputs(records, kind, slices):
    """Decoder outputs of one layer holding only one attention record."""
    n = max(s.stop for s in slices.values())
    cls, box = torch.zeros(1, BS, n, 3), torch.full((1, BS, n, 4), 0.5)
    if kind == 'self':  # one call: each group's block at its offset
        records = group_blocks([records], slices, BS)
    return DecoderOutputs(cls, box, slices, own_queries=None, attn={kind: [records]})


def _new_loss(name, s_record, t_record, pairs):
    """The loss as the distiller computes it: pair_losses on recorded attention."""
    kind = 'self' if name == 'loss_self_attn' else 'cross'
    student = _outputs(s_record, kind, {'lead': slice(0, N_LEAD), OWN_GROUP: STUDENT_SLICE})
    teacher = _outputs(t_record, kind, {OWN_GROUP: slice(0, N_TEACHER)})
    loss_fns = nn.ModuleDict({name: _loss_fn(name)})
    metas = [dict(img_shape=(64, 64))] * BS
    return pair_losses(loss_fns, pairs, (student, OWN_GROUP, 0), (teacher, 0), metas)[name]


def _loss_fn(name):
    return MODELS.build(ATTENTION_LOSSES[name])


def _old_self_loss(s_map, t_map, pairs):
    """The full-map formula: full head-averaged maps, the K x K blocks, MSE (the default
    self-attention loss renormalises the blocks over the kept queries)."""
    s_idx, t_idx = pairs
    s_map = s_map[:, STUDENT_SLICE, STUDENT_SLICE]
    loss_fn = _loss_fn('loss_self_attn')
    assert loss_fn.renormalise
    return loss_fn(gather_square(s_map, s_idx), gather_square(t_map, t_idx))


def _old_cross_loss(s_map, t_map, pairs):
    s_idx, t_idx = pairs
    s_rows = gather_queries(s_map[:, STUDENT_SLICE], s_idx)
    return _loss_fn('loss_cross_attn')(s_rows, gather_queries(t_map, t_idx))


def _leaf(*shape, seed):
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=gen, dtype=torch.float64).requires_grad_(True)


def _dino_like_mask(kind):
    """Student self-attention masks, ``True`` = masked: the own group cannot see the lead
    (DINO's matching queries and its DN queries); per image and head; float; padding."""
    n = N_LEAD + N_STUDENT
    mask = torch.zeros(n, n, dtype=torch.bool)
    mask[N_LEAD:, :N_LEAD] = True
    if kind == 'none':
        return {}
    if kind == 'dino':
        return dict(attn_mask=mask)
    if kind == 'per_image':  # (bs * heads, n, n): head h of image b also hides key h
        per = mask.repeat(BS * HEADS, 1, 1)
        for row in range(BS * HEADS):
            per[row, N_LEAD:, N_LEAD + row % N_STUDENT] = True
            per[row, N_LEAD + row % N_STUDENT, N_LEAD + row % N_STUDENT] = False
        return dict(attn_mask=per)
    if kind == 'float':
        gen = torch.Generator().manual_seed(7)
        return dict(attn_mask=torch.randn(n, n, generator=gen, dtype=torch.float64))
    padding = torch.zeros(BS, n, dtype=torch.bool)
    padding[1, :2] = True  # image 1: two lead keys are padding
    return dict(attn_mask=mask, key_padding_mask=padding)


# ---- self-attention, ConditionalAttention (Conditional DETR, DAB-DETR) --------------------


def _conditional(seed):
    torch.manual_seed(seed)
    return ConditionalAttention(embed_dims=DIM, num_heads=HEADS).double()


@pytest.mark.parametrize('seed', [0, 1])
def test_conditional_self_attention_rows_equal_the_full_map_formula(seed):
    pairs = _pairs(seed)
    student, teacher = _conditional(seed), _conditional(seed + 10)
    mask = _dino_like_mask('dino')['attn_mask']
    t_x = _leaf(BS, N_TEACHER, DIM, seed=seed + 20).detach()
    with torch.no_grad(), AttentionRecorder({'self': [teacher]}) as rec:
        _, t_map = teacher.forward_attn(t_x, t_x, t_x)
    x_new = _leaf(BS, N_LEAD + N_STUDENT, DIM, seed=seed)
    x_old = x_new.detach().clone().requires_grad_(True)
    with AttentionRecorder({'self': [student]}) as s_rec:
        student.forward_attn(x_new, x_new, x_new, attn_mask=mask)
    new = _new_loss('loss_self_attn', s_rec.record('self', 0), rec.record('self', 0), pairs)
    _, s_map = student.forward_attn(x_old, x_old, x_old, attn_mask=mask)
    old = _old_self_loss(s_map, t_map, pairs)
    torch.testing.assert_close(new, old, **CLOSE)
    assert old.item() > 0
    new.backward()
    old.backward()
    torch.testing.assert_close(x_new.grad, x_old.grad, **CLOSE)


# ---- self-attention, nn.MultiheadAttention (Deformable DETR, DINO) ------------------------


def _multihead(seed):
    torch.manual_seed(seed)
    # no output dropout: which `Dropout` the default config builds depends on the registry scope
    mha = MultiheadAttention(embed_dims=DIM, num_heads=HEADS, batch_first=True, dropout_layer=None)
    return mha.double()


def _old_multihead_map(mha, x, pos, masks):
    """The map the recorder used to keep: ``F.multi_head_attention_forward`` recomputed in
    inference mode, head-averaged, (bs, n, n)."""
    inner = mha.attn
    query, value = (x + pos).transpose(0, 1), x.transpose(0, 1)
    _, weights = F.multi_head_attention_forward(
        query, query, value, inner.embed_dim, inner.num_heads, inner.in_proj_weight,
        inner.in_proj_bias, None, None, False, 0.0, inner.out_proj.weight, inner.out_proj.bias,
        training=False, need_weights=True, average_attn_weights=True, **masks,
    )  # fmt: skip
    return weights


@pytest.mark.parametrize('mask_kind', ['none', 'dino', 'per_image', 'float', 'padding'])
def test_multihead_self_attention_rows_equal_the_full_map_formula(mask_kind):
    pairs = _pairs(3)
    student, teacher = _multihead(0), _multihead(1)
    masks = _dino_like_mask(mask_kind)
    t_x = _leaf(BS, N_TEACHER, DIM, seed=2).detach()
    t_pos = torch.randn_like(t_x)
    with torch.no_grad(), AttentionRecorder({'self': [teacher]}) as rec:
        teacher(t_x, query_pos=t_pos)
        t_map = _old_multihead_map(teacher, t_x, t_pos, {})
    x_new = _leaf(BS, N_LEAD + N_STUDENT, DIM, seed=4)
    x_old = x_new.detach().clone().requires_grad_(True)
    pos = torch.randn_like(x_new).detach()
    with AttentionRecorder({'self': [student]}) as s_rec:
        out_hooked = student(x_new, query_pos=pos, **masks)
    torch.testing.assert_close(out_hooked, student(x_old, query_pos=pos, **masks))  # observes
    new = _new_loss('loss_self_attn', s_rec.record('self', 0), rec.record('self', 0), pairs)
    new.backward()
    weight_grad_new = student.attn.in_proj_weight.grad.clone()
    student.zero_grad()
    old = _old_self_loss(_old_multihead_map(student, x_old, pos, masks), t_map, pairs)
    old.backward()
    torch.testing.assert_close(new, old, **CLOSE)
    assert old.item() > 0
    torch.testing.assert_close(x_new.grad, x_old.grad, **CLOSE)
    torch.testing.assert_close(weight_grad_new, student.attn.in_proj_weight.grad, **CLOSE)


def test_folded_records_give_each_group_its_rows():
    """A call folded by group (bs * G, n, n), viewed (bs, G, n, n), then group g."""
    student = _multihead(0)
    x = _leaf(BS, 2 * N_STUDENT, DIM, seed=5)
    folded = x.reshape(BS * 2, N_STUDENT, DIM)  # row b * 2 + g: group g of image b
    with AttentionRecorder({'self': [student]}) as rec:
        student(folded)
    record = rec.record('self', 0).view(BS, 2, N_STUDENT, N_STUDENT)
    assert record.shape == (BS, 2, N_STUDENT, N_STUDENT)
    s_idx, _ = _pairs(6)
    for g in range(2):
        alone = _old_multihead_map(student, x[:, g * N_STUDENT : (g + 1) * N_STUDENT], 0, {})
        block = record.group(g).rows(s_idx, s_idx)
        torch.testing.assert_close(block, gather_square(alone, s_idx), **CLOSE)


# ---- cross-attention: ConditionalAttention and deformable sampling density ----------------


def test_conditional_cross_attention_rows_equal_the_full_map_rows():
    pairs = _pairs(8)
    student, teacher = _conditional(0), _conditional(1)
    t_q, t_mem = _leaf(BS, N_TEACHER, DIM, seed=1).detach(), _leaf(BS, N_KEYS, DIM, seed=2)
    with torch.no_grad(), AttentionRecorder({'cross': [teacher]}) as rec:
        _, t_map = teacher.forward_attn(t_q, t_mem.detach(), t_mem.detach())
    q_new = _leaf(BS, N_LEAD + N_STUDENT, DIM, seed=3)
    q_old = q_new.detach().clone().requires_grad_(True)
    mem = _leaf(BS, N_KEYS, DIM, seed=4).detach()
    with AttentionRecorder({'cross': [student]}) as s_rec:
        student.forward_attn(q_new, mem, mem)
    new = _new_loss('loss_cross_attn', s_rec.record('cross', 0), rec.record('cross', 0), pairs)
    _, s_map = student.forward_attn(q_old, mem, mem)
    old = _old_cross_loss(s_map, t_map, pairs)
    new.backward()
    old.backward()
    torch.testing.assert_close(new, old, **CLOSE)
    torch.testing.assert_close(q_new.grad, q_old.grad, **CLOSE)


def _deformable_inputs(num_queries, seed):
    gen = torch.Generator().manual_seed(seed)
    shapes = torch.tensor([[6, 8], [3, 4]])
    starts = torch.cat([shapes.new_zeros(1), shapes.prod(1).cumsum(0)[:-1]])
    return dict(
        query=torch.randn(BS, num_queries, DIM, generator=gen),
        value=torch.randn(BS, int(shapes.prod(1).sum()), DIM, generator=gen),
        query_pos=torch.randn(BS, num_queries, DIM, generator=gen),
        reference_points=torch.rand(BS, num_queries, 2, 2, generator=gen),  # 2 levels, (x, y)
        spatial_shapes=shapes,
        level_start_index=starts,
    )


def test_deformable_cross_attention_rows_equal_the_full_density_rows():
    pairs = _pairs(9)
    torch.manual_seed(0)
    kw = dict(embed_dims=DIM, num_heads=HEADS, num_levels=2, num_points=2, batch_first=True)
    student, teacher = MultiScaleDeformableAttention(**kw), MultiScaleDeformableAttention(**kw)
    t_in = _deformable_inputs(N_TEACHER, seed=1)
    with torch.no_grad(), AttentionRecorder({'cross': [teacher]}) as rec:
        teacher(**t_in)
    s_in = _deformable_inputs(N_LEAD + N_STUDENT, seed=2)
    q_new = s_in['query'].requires_grad_(True)
    with AttentionRecorder({'cross': [student]}) as s_rec:
        student(**s_in)
    new = _new_loss('loss_cross_attn', s_rec.record('cross', 0), rec.record('cross', 0), pairs)
    q_old = q_new.detach().clone().requires_grad_(True)

    def full_density(attn, inputs):  # the map the recorder used to keep, all queries
        locations, weights = deformable_sampling(attn, inputs)
        grid = density_grid(inputs['spatial_shapes'])
        return splat_density(locations.float(), weights.float(), grid)

    with torch.no_grad():
        t_map = full_density(teacher, t_in)
    old = _old_cross_loss(full_density(student, dict(s_in, query=q_old)), t_map, pairs)
    new.backward()
    old.backward()
    torch.testing.assert_close(new, old, rtol=1e-6, atol=0)
    torch.testing.assert_close(q_new.grad, q_old.grad, rtol=1e-6, atol=1e-9)


# ---- what the backward pass keeps ---------------------------------------------------------


@pytest.mark.parametrize('family', ['conditional', 'multihead'])
def test_no_full_map_is_kept_for_the_backward_pass(family):
    """The loss on K = 5 kept queries of N = 600 keeps for backward nothing of O(N^2), nor of
    O(h K N): at most the recorded queries and keys (O(N d), kept by reference)."""
    n, kept = 600, K
    idx = torch.stack([torch.randperm(n)[:kept] for _ in range(BS)])
    x = _leaf(BS, n, DIM, seed=0).detach().float().requires_grad_(True)
    module = (_conditional if family == 'conditional' else _multihead)(0).float()
    with AttentionRecorder({'self': [module]}) as rec:
        module.forward_attn(x, x, x) if family == 'conditional' else module(x)
    saved = []
    with torch.autograd.graph.saved_tensors_hooks(lambda t: saved.append(t) or t, lambda t: t):
        block = rec.record('self', 0).rows(idx, idx)
        loss = _loss_fn('loss_self_attn')(block, torch.rand_like(block))  # renormalises
    assert max(t.numel() for t in saved) <= BS * n * DIM < BS * HEADS * kept * n
    loss.backward()
    assert x.grad.abs().sum() > 0


# ---- which record a nn.MultiheadAttention call leaves ------------------------------------


@pytest.mark.parametrize(
    'attn_drop, training', [(0.0, True), (0.0, False), (0.1, False), (0.1, True)]
)
def test_multihead_rows_are_picked_from_its_own_weights_where_they_are_pre_dropout(
    attn_drop, training
):
    """The module's head-averaged weights are used (no rows recomputed) where they are the
    pre-dropout softmax; after dropout (training, attn_drop > 0) queries and keys are kept.
    The rows are the same either way."""
    torch.manual_seed(0)
    mha = MultiheadAttention(DIM, HEADS, attn_drop=attn_drop, batch_first=True, dropout_layer=None)
    mha.double().train(training)
    x = _leaf(BS, N_STUDENT, DIM, seed=1)
    pairs = _pairs(3)
    with AttentionRecorder({'self': [mha]}) as rec:
        mha(x)
    record = rec.record('self', 0)
    want = QueryKeyProduct.of_call(
        mha.attn, (), dict(query=x.transpose(0, 1), key=x.transpose(0, 1))
    )
    after_dropout = training and attn_drop > 0
    assert isinstance(record, QueryKeyProduct if after_dropout else AttentionWeights)
    idx = pairs[0]
    torch.testing.assert_close(record.rows(idx, idx), want.rows(idx, idx), **CLOSE)
