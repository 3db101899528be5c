"""Build errors name the config keys of the distiller in use, and say what to set."""

import pytest
from mmdet.registry import MODELS

from mmdet_detrdistill.testing import distiller_cfg, tiny_detr_cfg

# the same component fed two query formats: a 32-wide student, a 64-wide teacher
NARROW, WIDE = dict(embed_dims=32), dict(embed_dims=64)


def _build(method, student=NARROW, teacher=WIDE, **kwargs):
    return MODELS.build(
        distiller_cfg(
            tiny_detr_cfg('dab', **student), tiny_detr_cfg('dab', **teacher), method, **kwargs
        )
    )


def test_d3etr_refuses_both_matchings_off_naming_its_matcher_keys():
    with pytest.raises(ValueError) as err:
        _build(
            'D3ETRDistiller',
            NARROW,
            NARROW,
            matcher=dict(type='MixMatcher', adaptive=False, fixed=False),
        )
    assert 'model.matcher.adaptive' in str(err.value) and 'model.matcher.fixed' in str(err.value)


def test_d3etr_query_format_error_names_its_matcher_key():
    with pytest.raises(ValueError, match='same query format') as err:
        _build('D3ETRDistiller', matcher=dict(type='MixMatcher', adaptive=False, fixed=True))
    assert 'model.matcher.fixed=False' in str(err.value)


def test_detrdistill_query_format_error_names_query_prior_not_a_d3etr_key():
    with pytest.raises(ValueError, match='same query format') as err:
        _build('DETRDistillDistiller')
    assert 'model.query_prior=None' in str(err.value)
    assert 'matcher' not in str(err.value)


def test_detrdistill_argument_of_the_wrong_kind_is_named():
    with pytest.raises(TypeError, match=r'model\.feature_kd must be a config dict'):
        _build('DETRDistillDistiller', NARROW, NARROW, feature_kd=True)


def test_oddetr_unknown_loss_key_names_its_init_query_argument():
    cfg = dict(type='ODDETRDistiller', student=tiny_detr_cfg('dab', **NARROW))
    cfg['init_query'] = dict(losses=dict(loss_typo=None))
    with pytest.raises(KeyError, match=r'model\.init_query: .*loss_typo'):
        MODELS.build(cfg)


def test_oddetr_two_assignment_overrides_name_both_switches():
    cfg = dict(type='ODDETRDistiller', student=tiny_detr_cfg('dab', **NARROW))
    cfg['components'] = dict(guided_too=dict(type='ODDETRGuidedAssignment'))
    with pytest.raises(ValueError, match='ground-truth assignment') as err:
        MODELS.build(cfg)
    assert 'model.guided_assignment=None' in str(err.value)
    assert 'model.components.guided_too=None' in str(err.value)


def test_configurable_query_format_error_names_its_components_entry():
    components = dict(fixed=dict(type='FixedMatchKD', prefix='d3etr.fixed'))
    with pytest.raises(ValueError, match='same query format') as err:
        _build('ConfigurableDistiller', components=components)
    assert 'model.components.fixed=None' in str(err.value)
    assert 'matcher' not in str(err.value)


def test_extra_component_of_a_preset_keeps_its_components_key():
    components = dict(prior=dict(type='QueryPriorAssignment'))
    with pytest.raises(ValueError, match='same query format') as err:
        _build(
            'D3ETRDistiller', matcher=dict(type='MixMatcher', fixed=False), components=components
        )
    assert 'model.components.prior=None' in str(err.value)


# -- config values of the wrong form fail at build, naming the key (issue 30, item 7) --


def test_one_field_of_a_default_loss_merges_into_the_default():
    model = _build(
        'D3ETRDistiller', NARROW, NARROW, adaptive_losses=dict(loss_cls=dict(loss_weight=2.0))
    )
    losses = model.components['adaptive'].losses
    assert type(losses['loss_cls']).__name__ == 'BinaryKLDistillLoss'
    assert losses['loss_cls'].loss_weight == 2.0
    assert losses['loss_bbox'].loss_weight == 5.0  # the other defaults are kept


def test_one_field_of_an_attention_loss_keeps_its_other_arguments():
    model = _build(
        'D3ETRDistiller', NARROW, NARROW, fixed_losses=dict(loss_self_attn=dict(loss_weight=5.0))
    )
    loss = model.components['fixed'].losses['loss_self_attn']
    assert loss.loss_weight == 5.0 and loss.ref_num_keys is not None


@pytest.mark.parametrize(
    'method, kwargs, key',
    [
        ('D3ETRDistiller', dict(adaptive_losses=dict(loss_bbox=dict(loss_weight=-1.0))), 'model'),
        ('DETRDistillDistiller', dict(feature_kd=dict(loss_weight=-0.5)), 'model.feature_kd'),
        (
            'DETRDistillDistiller',
            dict(query_prior=dict(loss_weight=float('nan'))),
            'model.query_prior',
        ),
        ('ODDETRDistiller', dict(aux_groups=dict(loss_weight=-2.0)), 'model.aux_groups'),
    ],
)
def test_negative_or_nan_loss_weights_are_refused(method, kwargs, key):
    with pytest.raises(ValueError, match='loss_weight=') as err:
        _build(method, NARROW, NARROW, **kwargs)
    assert key in str(err.value) and 'must be a finite number >= 0' in str(err.value)


@pytest.mark.parametrize(
    'kwargs, key',
    [
        (dict(matcher='MixMatcher'), 'model.matcher'),
        (dict(adaptive_losses='BinaryKLDistillLoss'), 'model.adaptive_losses'),
        (dict(components='feature'), 'model.components'),
    ],
)
def test_a_string_where_a_dict_is_expected_names_the_key(kwargs, key):
    with pytest.raises(TypeError, match=rf'{key} must be a config dict') as err:
        _build('D3ETRDistiller', NARROW, NARROW, **kwargs)
    assert 'got str' in str(err.value)


def test_oddetr_ema_of_the_wrong_form_names_the_key():
    cfg = dict(type='ODDETRDistiller', student=tiny_detr_cfg('dab', **NARROW), ema='EMA')
    with pytest.raises(TypeError, match=r'model\.ema must be a config dict'):
        MODELS.build(cfg)


def test_teacher_ckpt_expands_the_home_directory(tmp_path, monkeypatch):
    monkeypatch.setenv('HOME', str(tmp_path))
    model = _build('D3ETRDistiller', NARROW, NARROW, teacher_ckpt='~/t.pth')
    assert model.teacher_ckpt == str(tmp_path / 't.pth')
