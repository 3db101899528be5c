"""DETRDistill: knowledge distillation for DETR-family detectors (arXiv 2211.10156)."""

from typing import Optional, Union

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig

from ..components.config_keys import preset_keys
from .base_distiller import DETRDistillerBase

DETRDISTILL_COMPONENTS = dict(
    logits=dict(type='HungarianLogitsKD', prefix='detrdistill.logits'),
    feature=dict(type='TargetAwareFeatureKD', prefix='detrdistill.feature'),
    query_prior=dict(type='QueryPriorAssignment', prefix='detrdistill.query_prior'),
    contrastive=dict(type='ContrastiveEmbeddingKD', prefix='detrdistill.contrastive'),
)
# the argument that configures each component, for error messages
DETRDISTILL_ARGS = dict(
    logits='logits_kd', feature='feature_kd', query_prior='query_prior', contrastive='contrastive'
)


@MODELS.register_module()
class DETRDistillDistiller(DETRDistillerBase):
    """DETRDistill's three components and its official code's fourth, each one switchable.

    * ``logits_kd`` (:class:`HungarianLogitsKD`): progressive Hungarian-matching
      logits distillation, in every decoder layer;
    * ``feature_kd`` (:class:`TargetAwareFeatureKD`): neck features distilled
      under masks built from the teacher's top-k queries;
    * ``query_prior`` (:class:`QueryPriorAssignment`): the teacher's queries
      in the student's decoder, supervised with the ground truth under the
      teacher's assignment;
    * ``contrastive`` (:class:`ContrastiveEmbeddingKD`): InfoNCE between
      the decoder embeddings of the query pairs the logits distillation
      matches, in every decoder layer. Not in the paper; the official code's
      ``cl_head``, on in the config of its headline result.

    Each argument is merged over the component's defaults (``dict()`` keeps
    the defaults, ``None`` switches the component off). Unless it sets its
    own ``matcher``, the contrastive term pairs queries with the logits
    distillation's matcher. Loss keys read
    ``detrdistill.{logits|feature|query_prior|contrastive}.d{layer}.{loss name}``.

    Args:
        student, teacher, teacher_ckpt, allow_untrained_teacher, init_cfg, backbone: see
            :class:`DETRDistillerBase`.
        logits_kd (dict, optional): Defaults to ``dict()`` (on).
        feature_kd (dict, optional): Defaults to ``dict()`` (on).
        query_prior (dict, optional): Defaults to ``dict()`` (on).
        contrastive (dict, optional): Defaults to ``dict()`` (on).
        components (dict, optional): More components to mix in. Defaults to None.
    """

    def __init__(
        self,
        student: ConfigType,
        teacher: Union[str, ConfigType],
        teacher_ckpt: Optional[str] = None,
        allow_untrained_teacher: bool = False,
        logits_kd: Optional[dict] = dict(),
        feature_kd: Optional[dict] = dict(),
        query_prior: Optional[dict] = dict(),
        contrastive: Optional[dict] = dict(),
        components: Optional[dict] = None,
        init_cfg: OptMultiConfig = None,
        backbone: OptConfigType = None,
    ) -> None:
        chosen = dict(
            logits=logits_kd,
            feature=feature_kd,
            query_prior=query_prior,
            contrastive=contrastive,
        )
        keys = preset_keys(chosen, DETRDISTILL_ARGS, components)
        own = {
            name: None if cfg is None else {**DETRDISTILL_COMPONENTS[name], **cfg}
            for name, cfg in chosen.items()
        }
        if own['contrastive'] is not None and own['logits'] is not None:
            # the contrastive pairs are the logits distillation's matched pairs
            if 'matcher' in own['logits']:
                own['contrastive'].setdefault('matcher', own['logits']['matcher'])
        super().__init__(
            student,
            teacher,
            teacher_ckpt,
            allow_untrained_teacher,
            components={**own, **(components or {})},
            init_cfg=init_cfg,
            backbone=backbone,
            component_keys=keys,
        )
