"""D3ETR's tiny DINO -> Deformable DETR pairing: a teacher with three times the student's
queries (as 900 -> 300), whose self-attention maps are compared on the matched queries, each
side renormalised over them (issue #32, item 4)."""

import os.path as osp

import torch
from mmdet.models import DINO, DeformableDETR
from mmdet.registry import MODELS

from mmdet_detrdistill.models.components.pair_losses import ATTENTION_LOSSES
from mmdet_detrdistill.models.losses import AttentionMapDistillLoss
from mmdet_detrdistill.testing import REPO_ROOT, make_batch, smoke_model_cfg

CONFIG = osp.join(REPO_ROOT, 'configs/d3etr/d3etr_tiny-dino-t_tiny-deformable-s_1xb8-synth.py')


def test_the_teacher_has_three_times_the_queries_and_every_layer_distils_its_maps():
    torch.manual_seed(0)
    model = MODELS.build(smoke_model_cfg(CONFIG))
    model.init_weights()
    assert (model.teacher.num_queries, model.student.num_queries) == (90, 30)
    assert isinstance(model.teacher, DINO) and not isinstance(model.student, DINO)
    assert isinstance(model.student, DeformableDETR)
    self_attn = [
        m
        for name, m in model.named_modules()
        if isinstance(m, AttentionMapDistillLoss) and name.endswith('loss_self_attn')
    ]
    assert self_attn and all(m.renormalise for m in self_attn)
    assert ATTENTION_LOSSES['loss_self_attn']['renormalise'] is True
    model.train()
    batch = make_batch(model, image_shapes=((3, 96, 96), (3, 96, 80)), num_classes=4)
    losses = model(**batch, mode='loss')
    layers = model.student.decoder.num_layers
    for kind in ('loss_self_attn', 'loss_cross_attn'):
        found = [k for k in losses if k.startswith('d3etr.') and k.endswith(kind)]
        assert len(found) == layers, (kind, sorted(losses))
        assert all(torch.isfinite(losses[k]) for k in found)
