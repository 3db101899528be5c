"""The teacher's activations are released once the distiller's ``loss`` returns.

The teacher runs under ``no_grad``; its outputs (``DecoderOutputs``: features, decoder
embeddings, attention maps) are read by the components' losses and must not outlive the
step: nothing may keep them for the backward pass or the next step. (The losses keep only
what autograd saves: gathered copies of the teacher's targets.)
"""

import dataclasses
import weakref

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.distillers.base_distiller import DETRDistillerBase
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg


def _with_fields(x):
    """``x`` and, for a dataclass (an attention record), the tensors in its fields."""
    if not dataclasses.is_dataclass(x) or isinstance(x, type):
        return [x]
    fields = (getattr(x, f.name) for f in dataclasses.fields(x))
    return [x, *(v for v in fields if isinstance(v, torch.Tensor))]


@pytest.mark.parametrize('method', ['D3ETRDistiller', 'DETRDistillDistiller', 'ODDETRDistiller'])
def test_teacher_outputs_do_not_outlive_the_loss(method, monkeypatch):
    student, teacher = tiny_detr_cfg('conditional'), tiny_detr_cfg('conditional', num_queries=12)
    model = MODELS.build(distiller_cfg(student, teacher, method=method))
    model.init_weights()
    model.train()
    refs = []
    real = DETRDistillerBase.decoder_outputs

    def recording(net, *args):
        out = real(net, *args)
        if net is model.teacher:
            layers = [layer for kind in out.attn.values() for layer in kind]
            # self-attention: each group's block (its call's record); cross: the record
            maps = [
                m
                for layer in layers
                for m in (
                    [b.record for b in layer.values()] if isinstance(layer, dict) else [layer]
                )
            ]
            kept = [out, *out.feats, out.hidden_states, out.cls_scores, *maps]
            refs.extend(weakref.ref(x) for item in kept for x in _with_fields(item))
        return out

    monkeypatch.setattr(DETRDistillerBase, 'decoder_outputs', staticmethod(recording))
    losses = model(**make_batch(model), mode='loss')
    assert refs, 'the teacher ran'
    alive = [r() for r in refs if r() is not None]
    assert not alive, [type(x).__name__ + str(getattr(x, 'shape', '')) for x in alive]
    sum(v for k, v in losses.items() if 'loss' in k).backward()  # the losses need none of them
