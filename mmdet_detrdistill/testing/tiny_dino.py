"""A tiny DINO for unit tests (mmdet's DINO-4scale R50, shrunk; no downloads)."""

from mmengine.config import ConfigDict

from .tiny_models import real_model_cfg

DINO_CONFIG = 'dino/dino-4scale_r50_8xb2-12e_coco.py'


def tiny_dino_cfg(
    num_queries: int = 10,
    num_decoder_layers: int = 2,
    num_classes: int = 3,
    num_dn_queries: int = 12,
) -> ConfigDict:
    """mmdet's DINO, small enough for unit tests; dropout 0 as in DINO.

    mmdet's DINO decoder hard-codes a 256-d sine embedding of the reference
    boxes (``ref_point_head`` takes ``2 * embed_dims``), so it stays 256 wide;
    the backbone, encoder, FFNs, queries and DN queries shrink.
    """
    model = real_model_cfg(DINO_CONFIG)
    model.num_queries = num_queries
    model.test_cfg.max_per_img = num_queries
    model.backbone.update(depth=18, base_channels=16, frozen_stages=-1)
    model.neck.in_channels = [32, 64, 128]
    model.encoder.num_layers = 1
    model.decoder.num_layers = num_decoder_layers
    for coder in ('encoder', 'decoder'):
        model[coder].layer_cfg.ffn_cfg.feedforward_channels = 128
    model.bbox_head.num_classes = num_classes
    model.dn_cfg.group_cfg.num_dn_queries = num_dn_queries
    return model
