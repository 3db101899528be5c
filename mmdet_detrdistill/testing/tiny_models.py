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


def tiny_conditional_detr_cfg(
    embed_dims: int = 256,
    num_queries: int = 10,
    num_decoder_layers: int = 2,
    num_classes: int = 3,
    dropout: float = 0.1,
) -> ConfigDict:
    """A Conditional DETR small enough for unit tests (64-128 px images).

    mmdet's Conditional DETR decoder hard-codes a 256-d sine embedding of the
    reference points, so ``embed_dims`` must stay 256 for this family; the
    model is kept small by depth, FFN width and query count instead.
    """
    model = real_model_cfg('conditional_detr/conditional-detr_r50_8xb2-50e_coco.py')
    model.num_queries = num_queries
    model.test_cfg.max_per_img = num_queries
    model.backbone.update(depth=18, base_channels=16, frozen_stages=-1)
    model.neck.update(in_channels=[128], out_channels=embed_dims)
    heads = 8
    model.encoder.num_layers = 1
    enc = model.encoder.layer_cfg
    enc.self_attn_cfg.update(embed_dims=embed_dims, num_heads=heads, dropout=dropout)
    enc.ffn_cfg.update(embed_dims=embed_dims, feedforward_channels=128,
                       ffn_drop=dropout)
    model.decoder.num_layers = num_decoder_layers
    dec = model.decoder.layer_cfg
    dec.self_attn_cfg.update(embed_dims=embed_dims, num_heads=heads, attn_drop=dropout)
    dec.cross_attn_cfg.update(embed_dims=embed_dims, num_heads=heads, attn_drop=dropout)
    dec.ffn_cfg.update(embed_dims=embed_dims, feedforward_channels=128,
                       ffn_drop=dropout)
    model.positional_encoding.num_feats = embed_dims // 2
    model.bbox_head.update(num_classes=num_classes, embed_dims=embed_dims)
    return model


def distiller_cfg(
    student: Dict,
    teacher: Dict,
    method: str = 'D3ETRDistiller',
    **kwargs,
) -> ConfigDict:
    """A distiller config around two model configs, untrained teacher allowed."""
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
