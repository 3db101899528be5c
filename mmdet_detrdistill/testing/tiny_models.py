"""Configs of tiny and real DETRs without pretrained weights, and fake batches."""

import copy
import os.path as osp
from typing import Dict, Optional, Sequence

import mmdet
import torch
from mmdet.testing import demo_mm_inputs
from mmengine.config import Config, ConfigDict


def mmdet_config_path(rel_path: str) -> str:
    """Path of one of mmdet's own configs (``.mim/configs`` of a pip install)."""
    return osp.join(osp.dirname(mmdet.__file__), '.mim', 'configs', rel_path)


def real_model_cfg(rel_path: str, depth: Optional[int] = None) -> ConfigDict:
    """The model of a real mmdet config, with ``init_cfg=None`` (no download).

    Args:
        rel_path (str): e.g. ``'conditional_detr/conditional-detr_r50_8xb2-50e_coco.py'``.
        depth (int, optional): Override the ResNet depth (e.g. 101).
    """
    model = copy.deepcopy(Config.fromfile(mmdet_config_path(rel_path)).model)
    model.backbone.init_cfg = None
    if depth is not None:
        model.backbone.depth = depth
    return model


FAMILY_CONFIGS = {
    'conditional': 'conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    'dab': 'dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    'deformable': 'deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    'deformable-refine': 'deformable_detr/deformable-detr-refine_r50_16xb2-50e_coco.py',
    'deformable-twostage': 'deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
}
# mmdet's Conditional DETR decoder and two-stage Deformable DETR's proposal
# embedding hard-code 256-d sine embeddings, so those stay 256 wide; the
# others can shrink.
DEFAULT_EMBED_DIMS = {'conditional': 256, 'deformable-twostage': 256}


def tiny_detr_cfg(
    family: str = 'conditional',
    embed_dims: Optional[int] = None,
    num_queries: int = 10,
    num_decoder_layers: int = 2,
    num_classes: int = 3,
    dropout: float = 0.1,
) -> ConfigDict:
    """A DETR of one of mmdet's families, small enough for unit tests.

    Args:
        family (str): One of :data:`FAMILY_CONFIGS` (``'conditional'``,
            ``'dab'``, ``'deformable'``, ``'deformable-refine'``,
            ``'deformable-twostage'``).
        embed_dims (int, optional): Transformer width; 256 for Conditional
            DETR, 64 otherwise by default.
    """
    model = real_model_cfg(FAMILY_CONFIGS[family])
    embed_dims = embed_dims or DEFAULT_EMBED_DIMS.get(family, 64)
    model.num_queries = num_queries
    model.test_cfg.max_per_img = num_queries
    model.backbone.update(depth=18, base_channels=16, frozen_stages=-1)
    multi_scale = family.startswith('deformable')
    model.neck.update(in_channels=[32, 64, 128] if multi_scale else [128], out_channels=embed_dims)
    model.encoder.num_layers = 1
    model.decoder.num_layers = num_decoder_layers
    attn = ['encoder.self_attn_cfg', 'decoder.self_attn_cfg', 'decoder.cross_attn_cfg']
    for path in attn:
        coder, key = path.split('.')
        cfg = model[coder].layer_cfg[key]
        cfg.embed_dims = embed_dims
        if 'num_heads' in cfg or 'cross_attn' in cfg:
            cfg.num_heads = 8
        # ConditionalAttention takes `attn_drop`; mmcv's MultiheadAttention and
        # MultiScaleDeformableAttention take `dropout` (the latter defaults to 0.1)
        cfg['attn_drop' if 'attn_drop' in cfg else 'dropout'] = dropout
    for coder in ('encoder', 'decoder'):
        model[coder].layer_cfg.ffn_cfg.update(
            embed_dims=embed_dims, feedforward_channels=128, ffn_drop=dropout
        )
    model.positional_encoding.num_feats = embed_dims // 2
    model.bbox_head.num_classes = num_classes
    model.bbox_head.embed_dims = embed_dims
    return model


def tiny_conditional_detr_cfg(**kwargs) -> ConfigDict:
    """A tiny Conditional DETR (see :func:`tiny_detr_cfg`)."""
    return tiny_detr_cfg('conditional', **kwargs)


def distiller_cfg(
    student: Dict,
    teacher: Optional[Dict],
    method: str = 'D3ETRDistiller',
    **kwargs,
) -> ConfigDict:
    """A distiller config around two model configs, untrained teacher allowed.

    ``ODDETRDistiller`` takes no teacher (it is the student's EMA): ``teacher``
    is not used then.
    """
    if method == 'ODDETRDistiller':
        cfg = dict(type=method, student=student)
    else:
        cfg = dict(type=method, student=student, teacher=teacher, allow_untrained_teacher=True)
    cfg.update(kwargs)
    return ConfigDict(cfg)


def make_batch(
    model: torch.nn.Module,
    batch_size: int = 2,
    image_shapes: Sequence = ((3, 64, 64), (3, 64, 48)),
    num_items: Optional[Sequence[int]] = (3, 2),
    num_classes: int = 3,
    training: bool = True,
    seed: int = 0,
) -> Dict:
    """A preprocessed batch (``inputs``, ``data_samples``) for ``model``."""
    torch.manual_seed(seed)
    packed = demo_mm_inputs(
        batch_size=batch_size,
        image_shapes=list(image_shapes)[:batch_size],
        num_items=None if num_items is None else list(num_items)[:batch_size],
        num_classes=num_classes,
    )
    return model.data_preprocessor(packed, training)
