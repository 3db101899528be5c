"""2-process CPU DDP gives the gradients of one process on the global batch."""

import os
import pickle
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.testing import distiller_cfg, free_port, make_batch, tiny_detr_cfg

WORKER = os.path.join(os.path.dirname(__file__), 'ddp_worker.py')


def _setup(family, tmp_path, num_items, method='D3ETRDistiller'):
    student = tiny_detr_cfg(family, dropout=0.0)  # no randomness between the two runs
    teacher = tiny_detr_cfg(family, num_queries=12, dropout=0.0)
    cfg = distiller_cfg(student, teacher, method=method)
    model = MODELS.build(cfg)
    model.init_weights()
    model.train()
    # move the student off its init: zero-initialised box branches would put the fixed
    # group's boxes exactly on the teacher's, at the kink of the L1 loss, where the
    # subgradient jumps with rounding noise
    if method == 'ODDETRDistiller':
        model.update_teacher()  # the EMA starts as a copy: perturb the student after it
    with torch.no_grad():
        for p in model.student.parameters():
            p.add_(torch.randn_like(p) * 0.01)
    if method != 'ODDETRDistiller':  # OD-DETR's EMA teacher is in state_dict()
        # every rank loads the same teacher checkpoint (the teacher is not in state_dict())
        torch.save({'state_dict': model.teacher.state_dict()}, tmp_path / 'teacher.pth')
        cfg.update(teacher_ckpt=str(tmp_path / 'teacher.pth'), allow_untrained_teacher=False)
    # equal image sizes: padding is the same on one process and on two
    batch = make_batch(model, image_shapes=((3, 64, 64), (3, 64, 64)), num_items=num_items)
    with open(tmp_path / 'setup.pkl', 'wb') as f:
        pickle.dump(dict(cfg=cfg, state_dict=model.state_dict(), batch=batch), f)

    return model, batch


def _run_ddp(tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS='1', MASTER_ADDR='127.0.0.1')
    cmd = [
        sys.executable,
        '-m',
        'torch.distributed.run',
        '--nproc_per_node',
        '2',
        '--master_port',
        str(free_port()),
        WORKER,
        str(tmp_path),
    ]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=600, env=env)
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
    return [torch.load(tmp_path / f'grads_rank{rank}.pth') for rank in (0, 1)]


@pytest.mark.parametrize(
    'method, family',
    [
        ('D3ETRDistiller', 'conditional'),
        ('D3ETRDistiller', 'dab'),
        ('D3ETRDistiller', 'deformable-refine'),
        ('D3ETRDistiller', 'deformable-twostage'),
        ('DETRDistillDistiller', 'conditional'),
        ('DETRDistillDistiller', 'deformable-twostage'),
        ('ODDETRDistiller', 'dab'),
        ('ODDETRDistiller', 'deformable-refine'),
    ],
)
def test_ddp_gradients_equal_single_process(method, family, tmp_path):
    """Equal GT counts per rank: mmdet's Conditional/DAB heads normalise the class
    loss by the local GT count (sync_cls_avg_factor=False), so parity with one
    process holds for any student only when ranks hold equally many boxes."""
    model, batch = _setup(family, tmp_path, num_items=(2, 2), method=method)
    losses = model(**batch, mode='loss')
    sum(v for k, v in losses.items() if 'loss' in k).backward()
    expected = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    for got in _run_ddp(tmp_path):
        assert set(got) == set(expected)
        # error relative to the largest gradient: some gradients are exactly zero in
        # theory (attention key biases) and numerically ~1e-9, so no per-tensor rtol
        scale = max(g.abs().max().item() for g in expected.values())
        errors = {n: (got[n] - g).abs().max().item() / scale for n, g in expected.items()}
        worst = max(errors.items(), key=lambda kv: kv[1])
        assert worst[1] < 1e-5, worst


@pytest.mark.parametrize('method', ['D3ETRDistiller', 'DETRDistillDistiller', 'ODDETRDistiller'])
def test_ddp_rank_without_ground_truth_does_not_hang(method, tmp_path):
    """Rank 1 has no box: every rank still makes the same collective calls."""
    _setup('deformable', tmp_path, num_items=(3, 0), method=method)
    grads0, grads1 = _run_ddp(tmp_path)  # would time out on a mismatch of collectives
    for name, grad in grads0.items():
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grads1[name], grad)  # DDP synchronised them
