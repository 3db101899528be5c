"""The exported student config holds nothing of this package (``plain_mmdet_config``)."""

import pytest
from mmdet.registry import HOOKS

from mmdet_detrdistill.models.detectors import GROUP_DETECTORS, GROUP_HEADS
from mmdet_detrdistill.utils.plain_config import own_registered_types, plain_mmdet_config


def _training_cfg():
    own_hooks = [dict(type=n) for n in sorted(own_registered_types()) if n in HOOKS.module_dict]
    return dict(
        custom_imports=dict(
            imports=['mmdet_detrdistill', 'my_pkg.hooks'], allow_failed_imports=False
        ),
        model=dict(
            type='GroupConditionalDETR', num_queries=30, backbone=dict(type='ResNet', depth=18)
        ),
        custom_hooks=[dict(type='EMAHook', momentum=1e-3), *own_hooks],
        default_hooks=dict(checkpoint=dict(type='CheckpointHook', interval=2, max_keep_ckpts=1)),
        optim_wrapper=dict(
            optimizer=dict(type='AdamW', lr=1e-4), constructor='StudentOptimWrapperConstructor'
        ),
    )


def test_every_type_of_this_package_is_mapped_back_or_dropped():
    cfg, dropped = plain_mmdet_config(_training_cfg())
    own = own_registered_types()
    text = repr(cfg)
    assert not [name for name in own if f"'{name}'" in text]
    assert 'mmdet_detrdistill' not in text
    assert cfg['model']['type'] == 'ConditionalDETR' and cfg['model']['num_queries'] == 30
    assert cfg['optim_wrapper']['constructor'] == 'DefaultOptimWrapperConstructor'
    assert cfg['custom_hooks'][0] == dict(type='EMAHook', momentum=1e-3)
    assert cfg['custom_imports']['imports'] == ['my_pkg.hooks']  # others' imports are kept
    hooks = [h['type'] for h in cfg['custom_hooks']]
    assert all(HOOKS.get(h) is not None for h in hooks)
    assert {'DropExecutableConfigHook', 'RNGStateHook'} <= {d.split('(')[1][:-1] for d in dropped}


def test_a_subclass_of_an_mmengine_hook_becomes_that_hook():
    own_subclasses = {
        name: cls
        for name, (cls, registry) in own_registered_types().items()
        if registry is HOOKS and any(HOOKS.get(b.__name__) is b for b in cls.__mro__[1:])
    }
    for name, cls in own_subclasses.items():  # e.g. a checkpoint hook that writes atomically
        cfg, _ = plain_mmdet_config(
            dict(default_hooks=dict(checkpoint=dict(type=name, interval=3)))
        )
        base = cfg['default_hooks']['checkpoint']['type']
        assert issubclass(cls, HOOKS.get(base)) and base != name
        assert cfg['default_hooks']['checkpoint']['interval'] == 3


def test_type_without_plain_equivalent_is_an_error():
    with pytest.raises(ValueError, match=r"model\.components\.x\.type='FixedMatchKD'"):
        plain_mmdet_config(
            dict(model=dict(type='ConditionalDETR', components=dict(x=dict(type='FixedMatchKD'))))
        )


def test_only_own_custom_imports_are_removed():
    cfg, _ = plain_mmdet_config(dict(custom_imports=dict(imports=['mmdet_detrdistill'])))
    assert 'custom_imports' not in cfg


def test_arguments_the_base_does_not_take_are_dropped():
    model = dict(type='GroupConditionalDETR', _scope_='mmdet', num_queries=3, group_only_arg=1)
    cfg, _ = plain_mmdet_config(dict(model=model))
    assert cfg['model'] == dict(type='ConditionalDETR', _scope_='mmdet', num_queries=3)


@pytest.mark.parametrize('detector, head', list(zip(GROUP_DETECTORS, GROUP_HEADS)))
def test_the_group_detectors_and_heads_become_mmdets(detector, head):
    """What ``to_group_detector_cfg`` chose for a family is mapped back: detector and head."""
    model = dict(type=GROUP_DETECTORS[detector], bbox_head=dict(type=GROUP_HEADS[head]))
    cfg, _ = plain_mmdet_config(dict(model=model))
    assert cfg['model'] == dict(type=detector, bbox_head=dict(type=head))
