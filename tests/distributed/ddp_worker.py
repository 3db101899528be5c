"""One rank of a CPU DDP distillation run (gloo), started by torchrun.

Usage: python -m torch.distributed.run --nproc_per_node 2 ddp_worker.py WORK_DIR
WORK_DIR holds ``setup.pkl`` (model config, weights, global batch) written by
the test; this rank trains on image ``rank`` of the batch for two steps with
plain DistributedDataParallel (no find_unused_parameters: a second step fails
if any parameter went unused) and writes its gradients of the first step.
"""

import os
import pickle
import sys

import torch
import torch.distributed as dist
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from torch.nn.parallel import DistributedDataParallel

import mmdet_detrdistill  # noqa: F401


def main(work_dir: str) -> None:
    # gloo + device_ids=None: mmengine's init_dist would call torch.cuda.set_device
    dist.init_process_group('gloo')
    rank = dist.get_rank()
    register_all_modules()
    with open(os.path.join(work_dir, 'setup.pkl'), 'rb') as f:  # written by the test
        setup = pickle.load(f)
    model = MODELS.build(setup['cfg'])
    model.load_state_dict(setup['state_dict'])
    model.train()
    ddp = DistributedDataParallel(model, device_ids=None)
    batch = setup['batch']
    mine = dict(
        inputs=batch['inputs'][rank : rank + 1], data_samples=batch['data_samples'][rank : rank + 1]
    )
    grads = None
    for _ in range(2):
        ddp.zero_grad()
        losses = ddp(**mine, mode='loss')
        sum(v for k, v in losses.items() if 'loss' in k).backward()
        if grads is None:
            grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    torch.save(grads, os.path.join(work_dir, f'grads_rank{rank}.pth'))
    dist.destroy_process_group()


if __name__ == '__main__':
    main(sys.argv[1])
