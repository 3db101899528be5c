"""Attention recorded by hooks gives the maps the modules compute."""

import torch
from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmdet.models.layers.transformer.utils import ConditionalAttention

from mmdet_detrdistill.models.layers import AttentionRecorder
from mmdet_detrdistill.models.layers.attention_maps import splat_density


def test_conditional_attention_map_is_forward_attn_weights():
    attn = ConditionalAttention(embed_dims=32, num_heads=4, attn_drop=0.5).eval()
    q, k, v = torch.randn(2, 5, 32), torch.randn(2, 7, 32), torch.randn(2, 7, 32)
    with AttentionRecorder({'self': [attn]}) as rec:
        _, expected = attn.forward_attn(q, k, v)
    torch.testing.assert_close(rec.record('self', 0).full(), expected)


def test_multihead_map_is_pre_dropout_and_output_unchanged():
    attn = MultiheadAttention(embed_dims=32, num_heads=4, attn_drop=0.5, batch_first=True)
    q = torch.randn(2, 6, 32)
    attn.eval()
    with torch.no_grad():
        out_plain = attn(q)
        _, expected = attn.attn(q.transpose(0, 1), q.transpose(0, 1), q.transpose(0, 1))
        with AttentionRecorder({'self': [attn]}) as rec:
            out_hooked = attn(q)
    torch.testing.assert_close(out_hooked, out_plain)
    torch.testing.assert_close(rec.record('self', 0).full(), expected)
    attn.train()  # dropout on: the recorded map is still the clean one
    with torch.no_grad(), AttentionRecorder({'self': [attn]}) as rec:
        attn(q)
    torch.testing.assert_close(rec.record('self', 0).full(), expected)


def test_hooks_are_removed_after_recording():
    attn = ConditionalAttention(embed_dims=16, num_heads=2)
    with AttentionRecorder({'self': [attn]}):
        assert attn.attn_drop._forward_pre_hooks
    assert not attn.attn_drop._forward_pre_hooks


def test_splat_density_conserves_mass_and_lands_on_the_right_cell():
    # one sample at the centre of cell (row 1, col 2) of a 3x4 grid
    loc = torch.tensor([(2 + 0.5) / 4, (1 + 0.5) / 3]).view(1, 1, 1, 1, 1, 2)
    dens = splat_density(loc, torch.ones(1, 1, 1, 1, 1), (3, 4)).view(3, 4)
    assert dens[1, 2] == 1 and dens.sum() == 1
    # random samples inside the image: each query's density sums to its weight mass
    loc = torch.rand(2, 3, 4, 2, 5, 2) * 0.6 + 0.2
    w = torch.rand(2, 3, 4, 2, 5)
    dens = splat_density(loc, w, (6, 7))
    torch.testing.assert_close(dens.sum(-1), w.sum((2, 3, 4)) / 4)
