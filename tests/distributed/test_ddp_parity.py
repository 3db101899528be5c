"""2-process CPU DDP gives the gradients of one process on the global batch."""

import os
import pickle
import subprocess
import sys

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.testing import (
    distiller_cfg,
    free_port,
    make_batch,
    tiny_detr_cfg,
    tiny_dino_cfg,
)

pytestmark = pytest.mark.slow  # spawns two-process DDP groups

WORKER = os.path.join(os.path.dirname(__file__), 'ddp_worker.py')
# mmdet asserts noise scales > 0; at this one a noisy box is its GT box to the last bit
NO_NOISE = 1e-30


def _model_cfgs(family):
    """Student and teacher configs with no randomness between the two runs (dropout 0).

    DINO's denoising (DN) queries stay on with their mask and losses, but without noise:
    mmdet's ``CdnQueryGenerator`` draws one noise tensor for the GT boxes of the whole batch
    (``rand_like`` of the batch's concatenated GT, repeated per DN group), so the noise an image
    gets in one process is a slice of a draw that a rank holding that image alone never makes,
    whatever the seeds: no seeding gives exact parity with noise (with noise scales 0.5 the
    worst gradient here differed by 0.19 of the largest).
    """
    if family == 'dino':
        student = tiny_dino_cfg()  # DINO's dropout is 0
        student.dn_cfg.update(label_noise_scale=NO_NOISE, box_noise_scale=NO_NOISE)
        return student, tiny_dino_cfg(num_queries=12)
    return tiny_detr_cfg(family, dropout=0.0), tiny_detr_cfg(family, num_queries=12, dropout=0.0)


def _setup(family, tmp_path, num_items, method='D3ETRDistiller'):
    student, teacher = _model_cfgs(family)
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
        ('D3ETRDistiller', 'dino'),  # DN queries on, without noise (see _model_cfgs)
    ],
)
def test_ddp_gradients_equal_single_process(method, family, tmp_path):
    """Equal GT counts per rank: mmdet's Conditional/DAB heads normalise the class
    loss by the local GT count (sync_cls_avg_factor=False), so parity with one
    process holds for any student only when ranks hold equally many boxes. DINO's
    number of DN groups follows the largest GT count of the (local) batch: equal
    counts give each rank the groups of the one process."""
    model, batch = _setup(family, tmp_path, num_items=(2, 2), method=method)
    losses = model(**batch, mode='loss')
    assert family != 'dino' or 'dn_loss_cls' in losses  # the DN part ran
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


@pytest.mark.parametrize(
    'method, family',
    [
        ('D3ETRDistiller', 'deformable'),
        ('DETRDistillDistiller', 'deformable'),
        ('ODDETRDistiller', 'deformable'),
        ('D3ETRDistiller', 'dino'),  # rank 1: no DN query at all, rank 0: DN groups
    ],
)
def test_ddp_rank_without_ground_truth_does_not_hang(method, family, tmp_path):
    """Rank 1 has no box: every rank still makes the same collective calls."""
    _setup(family, tmp_path, num_items=(3, 0), method=method)
    grads0, grads1 = _run_ddp(tmp_path)  # would time out on a mismatch of collectives
    for name, grad in grads0.items():
        assert torch.isfinite(grad).all()
        torch.testing.assert_close(grads1[name], grad)  # DDP synchronised them
