"""A distiller made of whatever components the config lists."""

from mmdet.registry import MODELS

from .base_distiller import DETRDistillerBase


@MODELS.register_module()
class ConfigurableDistiller(DETRDistillerBase):
    """Distil with the components written in the config, from any method.

    Example: D3ETR's adaptive matching together with DETRDistill's
    target-aware feature distillation::

        model = dict(
            type='ConfigurableDistiller',
            student=..., teacher=..., teacher_ckpt=...,
            components=dict(
                adaptive=dict(type='AdaptiveMatchKD', prefix='d3etr.adaptive'),
                feature=dict(type='TargetAwareFeatureKD', prefix='detrdistill.feature'),
            ))

    A component without ``prefix`` takes its dict key as prefix. Arguments:
    see :class:`DETRDistillerBase`.
    """
