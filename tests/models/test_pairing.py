"""The pairing step: components declare their pairings, the distiller solves each distinct one
once per step and passes the pairs to their ``loss``; a component's loss keys come from
``DistillComponent.keyed`` (issue #31, item 2)."""

from collections import Counter

import pytest
import torch
from mmdet.registry import MODELS

from mmdet_detrdistill.models.common import OWN_GROUP, TEACHER_QUERY_GROUP, DecoderOutputs
from mmdet_detrdistill.models.components import DistillComponent
from mmdet_detrdistill.models.distillers import DETRDistillerBase
from mmdet_detrdistill.models.task_modules import MixMatcher
from mmdet_detrdistill.models.task_modules import pairing as pairing_module
from mmdet_detrdistill.models.task_modules.pairing import (
    hungarian_pairing,
    index_pairing,
    solve_pairings,
)
from mmdet_detrdistill.testing import distiller_cfg, make_batch, tiny_detr_cfg

ADAPTIVE = dict(type='MixMatcher', adaptive=True, fixed=False)
FIXED = dict(type='MixMatcher', adaptive=False, fixed=True)
METAS = [dict(img_shape=(64, 80)), dict(img_shape=(48, 64))]
# every component that pairs: D3ETR's two, DETRDistill's two, OD-DETR's initial queries
PAIRING_COMPONENTS = dict(
    adaptive=dict(type='AdaptiveMatchKD'),
    fixed=dict(type='FixedMatchKD'),
    logits=dict(type='HungarianLogitsKD'),
    contrastive=dict(type='ContrastiveEmbeddingKD'),
    init_query=dict(type='InitialQueryKD'),
)


def _outputs(num_layers, n=6, seed=0, group=OWN_GROUP):
    gen = torch.Generator().manual_seed(seed)
    cls = torch.randn(num_layers, len(METAS), n, 4, generator=gen)
    cxcy = torch.rand(num_layers, len(METAS), n, 2, generator=gen)
    wh = torch.rand(num_layers, len(METAS), n, 2, generator=gen) * 0.5 + 0.1
    return DecoderOutputs(cls, torch.cat([cxcy, wh], -1), {group: slice(0, n)}, None)


def _distiller(components=PAIRING_COMPONENTS):
    torch.manual_seed(0)
    cfg = distiller_cfg(
        tiny_detr_cfg('conditional'),
        tiny_detr_cfg('conditional'),
        method='ConfigurableDistiller',
        components=components,
    )
    model = MODELS.build(cfg)
    model.init_weights()
    return model.train()


def test_equal_requests_are_one_pairing_and_any_difference_another():
    base = hungarian_pairing(dict(ADAPTIVE))
    assert hungarian_pairing(dict(ADAPTIVE)) == base  # separately built matchers, equal configs
    assert base.matcher is not hungarian_pairing(dict(ADAPTIVE)).matcher
    others = [
        hungarian_pairing(ADAPTIVE, clamp_teacher_boxes=True),
        hungarian_pairing(dict(ADAPTIVE, teacher_topk=3)),
        index_pairing(ADAPTIVE),
    ]
    assert len({base, *others}) == 4
    solved = solve_pairings([base, *others, hungarian_pairing(ADAPTIVE)], *_two(), METAS)
    assert list(solved) == [base, *others]


def _two():
    return _outputs(2, seed=1), _outputs(3, seed=2)


def test_each_distinct_request_is_solved_once(monkeypatch):
    calls = Counter()
    real = pairing_module.solve_pairing
    monkeypatch.setattr(
        pairing_module,
        'solve_pairing',
        lambda request, *args: calls.update([request]) or real(request, *args),
    )
    requests = [hungarian_pairing(ADAPTIVE) for _ in range(3)] + [index_pairing(FIXED)] * 2
    solved = solve_pairings(requests, *_two(), METAS)
    assert len(solved) == 2 and set(calls.values()) == {1}
    assert solved[requests[1]] is solved[requests[0]]


def test_pairs_follow_the_layer_pairs_and_index_pairs_are_query_i_with_i():
    student, teacher = _outputs(2, seed=1, group=TEACHER_QUERY_GROUP), _outputs(3, seed=2)
    request = index_pairing(FIXED)
    solved = solve_pairings([request], student, teacher, METAS)[request]
    assert [(s, t) for s, t, _ in solved.layers] == MixMatcher.layer_pairs(2, 3)
    arange = torch.arange(6).expand(len(METAS), -1)
    for _, _, (s_idx, t_idx) in solved.layers:
        assert torch.equal(s_idx, arange) and torch.equal(t_idx, arange)
    assert solved.teacher is teacher


def test_a_distiller_step_solves_each_distinct_pairing_once(monkeypatch):
    """Five pairing components, three distinct pairings: D3ETR's adaptive (boxes as predicted),
    DETRDistill's logits and contrastive (boxes clamped: one pairing for both), and the index
    pairs of D3ETR's fixed matching and OD-DETR's initial queries (one pairing for both)."""
    model = _distiller()
    hungarian, index, given = [], [], {}
    real_match, real_fixed = MixMatcher.adaptive_match_layers, MixMatcher.fixed_match
    monkeypatch.setattr(
        MixMatcher, 'adaptive_match_layers', lambda m, *a: hungarian.append(m) or real_match(m, *a)
    )
    monkeypatch.setattr(
        MixMatcher, 'fixed_match', lambda m, *a: index.append(m) or real_fixed(m, *a)
    )
    for name, component in model.components.items():
        real_loss = component.loss
        monkeypatch.setattr(
            component,
            'loss',
            lambda *args, _name=name, _loss=real_loss: (
                given.update({_name: args[3]}) or _loss(*args)
            ),
        )
    losses = model(**make_batch(model), mode='loss')
    assert len(hungarian) == 2 and len(index) == 1  # one fixed_match per pairing
    assert all(len(pairs) == 1 for pairs in given.values())
    (logits,), (contrastive,) = given['logits'].values(), given['contrastive'].values()
    assert logits is contrastive  # the very same solve
    (fixed,), (init_query,) = given['fixed'].values(), given['init_query'].values()
    assert fixed is init_query
    assert next(iter(given['adaptive'].values())) is not logits
    assert all(torch.isfinite(v) for v in losses.values())


def test_a_components_loss_keys_come_from_keyed(monkeypatch):
    model = _distiller()
    from_keyed = set()
    real = DistillComponent.keyed

    def keyed(self, by_layer):
        out = real(self, by_layer)
        from_keyed.update(out)
        return out

    monkeypatch.setattr(DistillComponent, 'keyed', keyed)
    losses = model(**make_batch(model), mode='loss')
    prefixes = tuple(f'{name}.' for name in PAIRING_COMPONENTS)
    written = {k for k in losses if k.startswith(prefixes)}
    assert written and written == from_keyed
    assert {k.split('.')[0] for k in written} == set(PAIRING_COMPONENTS)


@pytest.mark.parametrize('name', list(PAIRING_COMPONENTS))
def test_a_pairing_component_declares_one_pairing(name):
    component = _distiller({name: PAIRING_COMPONENTS[name]}).components[name]
    (request,) = component.pairings()
    assert request.matcher is component.matcher
    group = TEACHER_QUERY_GROUP if name in ('fixed', 'init_query') else OWN_GROUP
    assert request.student_group == group
    assert request.clamp_teacher_boxes is (name in ('logits', 'contrastive'))


ALL_OFF = dict(loss_cls=None, loss_bbox=None, loss_iou=None)
# each pairing component with every loss term off: None, or a zero weight
OFF_COMPONENTS = dict(
    adaptive=dict(
        type='AdaptiveMatchKD',
        losses=dict(ALL_OFF, loss_self_attn=dict(loss_weight=0.0), loss_cross_attn=None),
    ),
    fixed=dict(
        type='FixedMatchKD',
        losses=dict(ALL_OFF, loss_self_attn=None, loss_cross_attn=dict(loss_weight=0)),
    ),
    logits=dict(type='HungarianLogitsKD', losses=dict(ALL_OFF, loss_cls=dict(loss_weight=0))),
    contrastive=dict(type='ContrastiveEmbeddingKD', loss=None),
    init_query=dict(type='InitialQueryKD', losses=ALL_OFF),
)


@pytest.mark.parametrize('name', list(OFF_COMPONENTS))
def test_a_component_with_every_loss_off_makes_no_solve(name, monkeypatch):
    """No pairs asked, none solved, no query group, no loss, no attention recorded, no
    parameter (the feature KD keeps the step a distillation step)."""
    components = {name: OFF_COMPONENTS[name], 'feature': dict(type='TargetAwareFeatureKD')}
    model = _distiller(components)
    component = model.components[name]
    assert component.all_losses_off() and component.pairings() == ()
    assert not component.attention_kinds() and not list(component.parameters())
    solves = []
    real = pairing_module.solve_pairing
    monkeypatch.setattr(
        pairing_module, 'solve_pairing', lambda *a, **k: solves.append(a) or real(*a, **k)
    )
    losses = model(**make_batch(model), mode='loss')
    assert not solves and not any(k.startswith(f'{name}.') for k in losses)
    assert any(k.startswith('feature.') for k in losses)
    with torch.no_grad():
        t_out = model.decoder_outputs(model.teacher, *make_batch(model).values(), ())
    assert component.query_groups(t_out, make_batch(model)['data_samples']) == []


def test_only_the_attention_kinds_a_loss_reads_are_recorded(monkeypatch):
    """Cross-attention off (None or a zero weight) in every component: self-attention only
    is recorded, and a step's outputs hold no cross-attention record."""
    components = dict(
        adaptive=dict(type='AdaptiveMatchKD', losses=dict(loss_cross_attn=None)),
        fixed=dict(type='FixedMatchKD', losses=dict(loss_cross_attn=dict(loss_weight=0.0))),
    )
    model = _distiller(components)
    assert model.attention_kinds() == {'self'}
    kinds = []
    real = DETRDistillerBase.decoder_outputs

    def spy(*args):
        out = real(*args)
        kinds.append(set(out.attn))
        return out

    monkeypatch.setattr(model, 'decoder_outputs', spy)
    losses = model(**make_batch(model), mode='loss')
    assert kinds == [{'self'}, {'self'}]  # teacher, student
    assert any('loss_self_attn' in k for k in losses)
    assert not any('loss_cross_attn' in k for k in losses)
    assert _distiller(dict(logits=dict(type='HungarianLogitsKD'))).attention_kinds() == set()
