"""Every loss of every config on a fixed batch: a reference that a refactor must reproduce.

``python -m mmdet_detrdistill.testing.loss_reference OUT.json`` writes, for each model config
of ``configs/``, the loss dict of one training-mode forward pass (dropout off) on a fixed
batch, with weights set from each parameter's *name* (not the build's random-number order, so
a refactor that builds modules in another order gives the same model).
``tests/configs/test_loss_reference.py`` compares the current code with the saved reference;
``python -m mmdet_detrdistill.testing.loss_reference --check REF.json [CONFIG ...]`` prints what
differs.
"""

import glob
import json
import math
import os.path as osp
import sys
import zlib
from typing import Dict, List, Optional

import torch
from mmdet.registry import MODELS
from mmdet.utils import register_all_modules
from torch import nn

from .config_smoke import smoke_model_cfg
from .synth_runs import REPO_ROOT
from .tiny_models import make_batch

#: relative and absolute tolerance of a loss against its reference (fp32 sums of many terms)
RTOL, ATOL = 1e-5, 1e-6
#: what a model's parameter names start with, to be stripped before seeding: an OD-DETR EMA
#: teacher starts equal to its student, as in training
_ROLE_PREFIXES = ('student.', 'teacher.', 'ema.module.', 'module.')


def model_configs(root: str = REPO_ROOT) -> List[str]:
    """Config files with a model, relative to ``root``, sorted."""
    paths = glob.glob(osp.join(root, 'configs', '**', '*.py'), recursive=True)
    return sorted(
        osp.relpath(p, root)
        for p in paths
        if not osp.basename(p).startswith('synth-coco_data')
        and osp.basename(osp.dirname(p)) != '_base_'
    )


def _seed_name(name: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in _ROLE_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix) :], True
    return name


@torch.no_grad()
def fill_by_name(module: nn.Module) -> None:
    """Set every floating parameter from a generator seeded by its name.

    Matrices: uniform in +-1/sqrt(fan_in); vectors: 1 + U(+-0.1) for norm weights, U(+-0.1)
    otherwise. Buffers (batch-norm statistics) keep their deterministic defaults.
    """
    for name, param in module.named_parameters():
        if not param.is_floating_point():
            continue
        gen = torch.Generator().manual_seed(zlib.crc32(_seed_name(name).encode()))
        u = torch.rand(param.shape, generator=gen, dtype=torch.float64) * 2 - 1
        if param.dim() >= 2:
            value = u / math.sqrt(param[0].numel())
        elif name.endswith('weight') and any(k in name for k in ('norm', 'bn', 'ln', 'gn')):
            value = 1 + 0.1 * u
        else:
            value = 0.1 * u
        param.copy_(value.to(param.dtype))


def config_losses(
    config: str, root: str = REPO_ROOT, model_options: Optional[Dict] = None
) -> Dict[str, float]:
    """The loss dict (floats) of one training forward of ``config`` on the fixed batch.

    Runs on one intra-op thread: with two, float sums are ordered differently, and a
    near-tie in a Hungarian matching can then pick other pairs (measured: D3ETR's
    self-attention losses 1% apart on ``d3etr_deformable-detr-r101_cond-detr-r50``, with
    the code before and after the issue-21 refactor alike).

    Args:
        config (str): Config file, relative to ``root``.
        root (str): Repository root. Defaults to this repository's.
        model_options (dict, optional): Keys of the config's ``model`` replaced by these
            values (a variant, e.g. ``dict(guided_assignment=dict(type=...))``). Defaults
            to None.
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _config_losses(config, root, model_options or {})
    finally:
        torch.set_num_threads(threads)


def _config_losses(config: str, root: str, model_options: Dict) -> Dict[str, float]:
    cfg = smoke_model_cfg(osp.join(root, config))
    for key, value in model_options.items():  # replaced, not merged
        cfg[key] = value
    model = MODELS.build(cfg)
    model.init_weights()
    fill_by_name(model)
    teacher = getattr(model, 'teacher', None)
    if isinstance(teacher, nn.Module) and not getattr(model, '_teacher_in_module_tree', False):
        fill_by_name(teacher)
    model.train()
    for m in model.modules():
        if isinstance(m, nn.Dropout):
            m.p = 0.0
    if isinstance(teacher, nn.Module):
        for m in teacher.modules():
            if isinstance(m, nn.Dropout):
                m.p = 0.0
    num_classes = getattr(model, 'student', model).bbox_head.num_classes
    batch = make_batch(
        model, image_shapes=((3, 160, 160), (3, 160, 128)), num_classes=num_classes, seed=0
    )
    torch.manual_seed(0)
    losses = model(**batch, mode='loss')
    out = {}
    for key, value in sorted(losses.items()):
        values = value if isinstance(value, (list, tuple)) else [value]
        total = sum(torch.as_tensor(v, dtype=torch.float64).sum() for v in values)
        out[key] = float(total)
    return out


def differences(reference: Dict[str, float], losses: Dict[str, float]) -> List[str]:
    """Keys missing on either side, and values outside ``RTOL``/``ATOL``, as lines."""
    lines = [
        f'{k}: missing now (reference {reference[k]:.6g})' for k in reference.keys() - losses.keys()
    ]
    lines += [f'{k}: new (not in the reference)' for k in losses.keys() - reference.keys()]
    for key in sorted(reference.keys() & losses.keys()):
        ref, now = reference[key], losses[key]
        if not math.isclose(now, ref, rel_tol=RTOL, abs_tol=ATOL):
            lines.append(f'{key}: {now:.9g} now, {ref:.9g} in the reference')
    return sorted(lines)


def check(ref_file: str, configs: List[str]) -> int:
    """Compare ``configs`` (default: all in the reference) with ``ref_file``; 1 if any differs."""
    with open(ref_file) as f:
        reference = json.load(f)['losses']
    failed = 0
    for config in configs or sorted(reference):
        diff = differences(reference[config], config_losses(config))
        print(f'{config}: ' + ('same' if not diff else f'{len(diff)} differ'), flush=True)
        for line in diff:
            print('   ', line)
        failed |= bool(diff)
    return failed


def main(argv: List[str]) -> None:
    if not argv or (argv[0].startswith('-') and argv[0] != '--check'):
        sys.exit(__doc__)
    register_all_modules()
    if argv[0] == '--check':
        sys.exit(check(argv[1], argv[2:]))
    out_file = argv[0]
    configs = argv[1:] or model_configs()
    reference = {}
    for i, config in enumerate(configs, 1):
        reference[config] = config_losses(config)
        print(f'[{i}/{len(configs)}] {config}: {len(reference[config])} losses', flush=True)
    with open(out_file, 'w') as f:
        json.dump(dict(torch=torch.__version__, losses=reference), f, indent=1, sort_keys=True)


if __name__ == '__main__':
    main(sys.argv[1:])
