"""The shared helpers of ``models/common``: one implementation each, and what it promises."""

import pytest
import torch
import torch.nn.functional as F

from mmdet_detrdistill.models.common import (
    FINITE_COST_LIMIT,
    autocast_off,
    clamp_finite,
    gather_queries,
    gather_square,
    pixel_scale,
    soft_label_bce_cost,
)


def test_gather_queries_picks_per_image_rows_and_passes_none_through():
    x = torch.arange(2 * 5 * 3.0).reshape(2, 5, 3)
    idx = torch.tensor([[4, 0], [1, 1]])
    out = gather_queries(x, idx)
    assert out.shape == (2, 2, 3)
    assert all(torch.equal(out[b, k], x[b, idx[b, k]]) for b in range(2) for k in range(2))
    assert gather_queries(None, idx) is None


def test_gather_square_is_the_map_among_the_gathered_queries():
    attn = torch.rand(2, 6, 6)
    idx = torch.tensor([[5, 2, 0], [1, 3, 4]])
    out = gather_square(attn, idx)
    for b in range(2):
        torch.testing.assert_close(out[b], attn[b][idx[b]][:, idx[b]], rtol=0, atol=0)


def test_pixel_scale_is_exact_whatever_the_dtype_of_the_boxes():
    metas = [dict(img_shape=(800, 1333)), dict(img_shape=(2501, 2049, 3))]
    want = torch.tensor([[[1333.0, 800, 1333, 800]], [[2049.0, 2501, 2049, 2501]]])
    for dtype in (torch.float32, torch.float16, torch.bfloat16):
        scale = pixel_scale(torch.zeros(2, 3, 4, dtype=dtype), metas)
        assert scale.dtype == torch.float32 and torch.equal(scale, want)
    assert torch.equal(pixel_scale(torch.device('cpu'), metas), want)


def test_autocast_off_keeps_fp32_inside_an_autocast_block():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        assert (a @ b).dtype == torch.bfloat16
        with autocast_off(a):
            assert (a @ b).dtype == torch.float32
        with autocast_off(a.device):
            assert (a @ b).dtype == torch.float32


def test_clamp_finite_bounds_every_cost():
    cost = torch.tensor([float('nan'), float('inf'), -float('inf'), 1e9, -1e9, 3.0])
    out = clamp_finite(cost)
    lim = FINITE_COST_LIMIT
    assert torch.equal(out, torch.tensor([lim, lim, -lim, lim, -lim, 3.0]))


def test_soft_label_bce_cost_is_the_summed_bce_and_batched_equals_per_image():
    torch.manual_seed(0)
    logits, labels = torch.randn(2, 5, 7), torch.rand(2, 4, 7)
    batched = soft_label_bce_cost(logits, labels)
    assert batched.shape == (2, 5, 4)
    for b in range(2):
        explicit = F.binary_cross_entropy_with_logits(
            logits[b][:, None].expand(-1, 4, -1),
            labels[b][None].expand(5, -1, -1),
            reduction='none',
        ).sum(-1)
        torch.testing.assert_close(soft_label_bce_cost(logits[b], labels[b]), explicit)
        torch.testing.assert_close(batched[b], soft_label_bce_cost(logits[b], labels[b]))


def test_soft_label_bce_cost_refuses_different_class_counts():
    with pytest.raises(ValueError, match='share classes'):
        soft_label_bce_cost(torch.randn(3, 5), torch.rand(2, 4))
