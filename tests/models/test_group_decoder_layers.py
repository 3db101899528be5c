"""Group folding is an explicit path of the group decoder layers, chosen by a config option."""

import dataclasses
import os.path as osp

import pytest
import torch
from mmdet.registry import MODELS
from mmengine.config import Config
from torch.nn.modules import module as torch_module

from mmdet_detrdistill.models.detectors import to_group_detector_cfg
from mmdet_detrdistill.models.layers import FoldedGroupLayout, GroupSelfAttentionMixin
from mmdet_detrdistill.testing import (
    FAMILY_CONFIGS,
    REPO_ROOT,
    distiller_cfg,
    make_batch,
    tiny_detr_cfg,
)

CLOSE = dict(atol=1e-5, rtol=1e-5)


def _model(family, fold=True):
    torch.manual_seed(0)
    cfg = to_group_detector_cfg(tiny_detr_cfg(family), 'student')
    model = MODELS.build(dict(cfg, fold_group_self_attention=fold))
    model.init_weights()
    return model.eval()  # dropout off: the two paths are compared exactly


def _groups(model, batch, with_tail):
    """Two groups of the own group's size; with a tail, then two padded groups (OD-DETR)."""
    feats = model.extract_feat(batch['inputs'])
    with torch.no_grad():
        _, _, own = model.forward_transformer_with_groups(feats, batch['data_samples'])
    g = torch.Generator().manual_seed(1)

    def noisy(x, size=None):
        return None if x is None else (x + torch.randn(x.shape, generator=g))[:, :size]

    def group(name, size=None, valid=None):
        return dataclasses.replace(
            own,
            name=name,
            query=noisy(own.query, size),
            query_pos=noisy(own.query_pos, size),
            reference=None if own.reference is None else own.reference[:, :size],
            valid=valid,
        )

    if not with_tail:
        return [group('a'), group('b')]
    return [group('a'), group('aux0', 4, torch.tensor([[1, 1, 1, 0], [1, 1, 0, 0]]).bool())]


def _hooks(model):
    """Names of the modules of ``model`` with a forward (pre-)hook, and global hooks."""
    named = [n for n, m in model.named_modules() if m._forward_hooks or m._forward_pre_hooks]
    hooks = (torch_module._global_forward_hooks, torch_module._global_forward_pre_hooks)
    return named + ['global' for h in hooks if h]


@pytest.mark.parametrize('family', list(FAMILY_CONFIGS))
@pytest.mark.parametrize('with_tail', [False, True])
def test_grouped_forward_registers_no_hook_and_folded_equals_masked(family, with_tail):
    model, masked_model = _model(family), _model(family, fold=False)
    masked_model.load_state_dict(model.state_dict())
    batch = make_batch(model)
    groups = _groups(model, batch, with_tail)
    calls = []
    for attn in model.decoder_attention_modules()['self']:
        forward = attn.forward

        def observed(*args, forward=forward, **kwargs):  # no hook: the instance's own forward
            calls.append((_hooks(model), kwargs['query'].shape[0], kwargs.get('attn_mask')))
            return forward(*args, **kwargs)

        attn.forward = observed
    with torch.no_grad():
        feats = model.extract_feat(batch['inputs'])
        folded = model.forward_transformer_with_groups(feats, batch['data_samples'], groups)[0]
        feats = masked_model.extract_feat(batch['inputs'])
        masked = masked_model.forward_transformer_with_groups(feats, batch['data_samples'], groups)[
            0
        ]
    bs, num_layers = batch['inputs'].shape[0], len(model.decoder.layers)
    assert all(hooks == [] for hooks, _, _ in calls)
    if with_tail:  # per layer: the folded head (own + a: bs * 2 rows), then the masked tail
        assert [(rows, mask is None) for _, rows, mask in calls] == [
            (bs * 2, True),
            (bs, False),
        ] * num_layers
    else:
        assert [(rows, mask) for _, rows, mask in calls] == [(bs * 3, None)] * num_layers
    torch.testing.assert_close(folded['hidden_states'], masked['hidden_states'], **CLOSE)


def test_layout_is_an_ordinary_argument_of_the_layers(monkeypatch):
    seen = []
    group_self_attn = GroupSelfAttentionMixin.group_self_attn

    def spy(self, group_layout, **inputs):
        seen.append((group_layout, inputs['attn_mask'] is not None))
        return group_self_attn(self, group_layout, **inputs)

    monkeypatch.setattr(GroupSelfAttentionMixin, 'group_self_attn', spy)
    model = _model('dab')
    batch = make_batch(model)
    groups = _groups(model, batch, with_tail=False)
    seen.clear()
    with torch.no_grad():
        model.forward_transformer_with_groups(
            model.extract_feat(batch['inputs']), batch['data_samples'], groups
        )
    assert [(layout, mask) for layout, mask in seen] == [(FoldedGroupLayout(3), False)] * len(
        model.decoder.layers
    )


def _tiny_distiller(**cfg_options):
    cfg = Config.fromfile(osp.join(REPO_ROOT, 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'))
    cfg.merge_from_dict({'model.allow_untrained_teacher': True, **cfg_options})
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    model.init_weights()
    return model.eval()  # dropout off


@pytest.mark.parametrize('fold', [True, False])
def test_config_option_switches_the_path(fold, monkeypatch):
    layouts, masks = [], []
    group_self_attn = GroupSelfAttentionMixin.group_self_attn

    def spy(self, group_layout, **inputs):
        layouts.append(group_layout is not None)
        masks.append(inputs['attn_mask'] is not None)
        return group_self_attn(self, group_layout, **inputs)

    monkeypatch.setattr(GroupSelfAttentionMixin, 'group_self_attn', spy)
    options = {} if fold else {'model.student.fold_group_self_attention': False}
    model = _tiny_distiller(**options)
    assert model.student.fold_group_self_attention is fold
    assert model.teacher.fold_group_self_attention  # the option is the student's
    batch = make_batch(model)
    with torch.no_grad():
        losses = model(**batch, mode='loss')
    assert all(torch.isfinite(v).all() for v in losses.values())
    student_calls = [(f, m) for f, m in zip(layouts, masks) if f or m]  # the grouped pass
    assert student_calls and all(f is fold and m is not fold for f, m in student_calls)


@pytest.mark.parametrize('family', list(FAMILY_CONFIGS))
def test_student_option_in_a_distiller_config_dict(family):
    student = dict(tiny_detr_cfg(family), fold_group_self_attention=False)
    model = MODELS.build(distiller_cfg(student, tiny_detr_cfg(family), 'DETRDistillDistiller'))
    assert not model.student.fold_group_self_attention
    batch = make_batch(model)
    groups = _groups(model.student, batch, with_tail=False)
    assert model.student.folded_group_layout([groups[0], *groups]) is None
