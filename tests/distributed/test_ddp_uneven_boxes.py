"""Group losses are normalised over processes: DDP parity with uneven box counts per rank."""

import pytest
from test_ddp_parity import _run_ddp, _setup  # same folder: pytest puts it on sys.path

pytestmark = pytest.mark.slow  # spawns two-process DDP groups


@pytest.mark.parametrize(
    'method, family',
    [
        ('ODDETRDistiller', 'deformable'),  # auxiliary groups: one slot count per GT box
        ('DETRDistillDistiller', 'deformable-twostage'),  # query prior: mmdet's head losses
    ],
)
def test_ddp_gradients_equal_single_process_with_uneven_boxes(method, family, tmp_path):
    """Rank 0 holds 3 GT boxes, rank 1 one. A loss normalised per process (each rank divides
    by its own count) weighs rank 1's boxes 3x; mmdet's heads divide by the count averaged
    over processes, so that 2 ranks give the gradient of 1 process on both images. Deformable
    DETR's head syncs its class normaliser too (``sync_cls_avg_factor=True``)."""
    model, batch = _setup(family, tmp_path, num_items=(3, 1), method=method)
    losses = model(**batch, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    expected = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    scale = max(g.abs().max().item() for g in expected.values())
    for got in _run_ddp(tmp_path):
        assert set(got) == set(expected)
        errors = {n: (got[n] - g).abs().max().item() / scale for n, g in expected.items()}
        worst = max(errors.items(), key=lambda kv: kv[1])
        assert worst[1] < 1e-5, worst
