"""D3ETR: decoder distillation with MixMatcher (arXiv 2211.09768)."""

from typing import Optional, Union

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..components.config_keys import COMPONENTS_EXAMPLE, ComponentKeys, require_dict
from ..components.pair_losses import ALL_PAIR_LOSSES
from .base_distiller import DETRDistillerBase


@MODELS.register_module()
class D3ETRDistiller(DETRDistillerBase):
    """D3ETR: distil a DETR's decoder through MixMatcher.

    In every student decoder layer l (paired with a teacher layer by
    :meth:`MixMatcher.layer_pairs`):

    * ``adaptive`` (:class:`AdaptiveMatchKD`): the student's own queries are
      Hungarian-matched to the teacher's predictions of layer l;
    * ``fixed`` (:class:`FixedMatchKD`): the teacher's queries run through the
      student decoder as the extra group ``'teacher_queries'`` (isolated from
      the student's own by the self-attention mask) and query i is paired
      with teacher query i.

    For the pairs of each kind: class scores (:class:`BinaryKLDistillLoss`),
    boxes (L1 on normalised cxcywh, GIoU on pixel xyxy, both averaged over
    pairs), self-attention among matched queries and their cross-attention
    to the memory (:class:`AttentionMapDistillLoss`), both reordered by the
    match. Loss keys read ``d3etr.{adaptive|fixed}.d{layer}.{loss name}``.
    The student's own ground-truth losses are kept unchanged.

    Args:
        student, teacher, teacher_ckpt, allow_untrained_teacher, init_cfg, backbone: see
            :class:`DETRDistillerBase`.
        matcher (dict): MixMatcher config; ``adaptive``/``fixed`` switch the
            two kinds (at least one must be on unless ``components`` adds
            others). Defaults to ``dict(type='MixMatcher')``.
        adaptive_losses (dict, optional): Losses for adaptive pairs, merged
            over the defaults (class 1, L1 5, GIoU 2, self-attention 1e4,
            cross-attention 1e3, both key-count normalised, see
            :class:`AttentionMapDistillLoss`); a ``None`` entry switches that
            loss off.
        fixed_losses (dict, optional): Same, for fixed pairs.
        components (dict, optional): More components to mix in (e.g.
            ``feature=dict(type='TargetAwareFeatureKD')``). Defaults to None.
    """

    def __init__(
        self,
        student: ConfigType,
        teacher: Union[str, ConfigType],
        teacher_ckpt: Optional[str] = None,
        allow_untrained_teacher: bool = False,
        matcher: ConfigType = dict(type='MixMatcher'),
        adaptive_losses: Optional[dict] = None,
        fixed_losses: Optional[dict] = None,
        components: Optional[dict] = None,
        init_cfg: OptMultiConfig = None,
        backbone: OptConfigType = None,
    ) -> None:
        require_dict(matcher, 'model.matcher', "dict(type='MixMatcher')")
        for key, losses in (('adaptive_losses', adaptive_losses), ('fixed_losses', fixed_losses)):
            require_dict(losses, f'model.{key}', 'dict(loss_cls=dict(loss_weight=2.0))', True)
        require_dict(components, 'model.components', COMPONENTS_EXAMPLE, True)
        matcher = dict(matcher)
        adaptive, fixed = matcher.get('adaptive', True), matcher.get('fixed', True)
        others = [name for name, cfg in (components or {}).items() if cfg is not None]
        if not (adaptive or fixed or others):
            raise ValueError(
                'model.matcher.adaptive=False and model.matcher.fixed=False switch off both of '
                "D3ETR's matchings, and no other component is set: nothing would be distilled. "
                'Set model.matcher.adaptive=True and/or model.matcher.fixed=True (or train the '
                'student config alone for a baseline).'
            )
        d3etr = dict(
            adaptive=dict(
                type='AdaptiveMatchKD',
                prefix='d3etr.adaptive',
                matcher=matcher,
                losses=_named(adaptive_losses, 'adaptive_losses'),
            )
            if adaptive
            else None,
            fixed=dict(
                type='FixedMatchKD',
                prefix='d3etr.fixed',
                matcher=matcher,
                losses=_named(fixed_losses, 'fixed_losses'),
            )
            if fixed
            else None,
        )
        super().__init__(
            student,
            teacher,
            teacher_ckpt,
            allow_untrained_teacher,
            components={**d3etr, **(components or {})},
            init_cfg=init_cfg,
            backbone=backbone,
            component_keys={
                name: ComponentKeys(
                    f'model.matcher, model.{name}_losses', f'model.matcher.{name}=False'
                )
                for name in d3etr
                if name not in (components or {})
            },
        )


def _named(losses: Optional[dict], key: str) -> Optional[dict]:
    """Check loss keys here, so that errors name ``model.{key}``."""
    unknown = sorted(set(losses or {}) - set(ALL_PAIR_LOSSES))
    if unknown:
        raise KeyError(
            f'model.{key}: unknown loss keys {unknown}; allowed keys are '
            f'{sorted(ALL_PAIR_LOSSES)} (set one to None to switch it off)'
        )
    return losses
