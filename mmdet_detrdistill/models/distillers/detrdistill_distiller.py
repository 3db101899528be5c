"""DETRDistill: knowledge distillation for DETR-family detectors (arXiv 2211.10156)."""

from typing import Optional, Union

from mmdet.registry import MODELS
from mmdet.utils import ConfigType, OptMultiConfig

from .base_distiller import DETRDistillerBase

DETRDISTILL_COMPONENTS = dict(
    logits=dict(type='HungarianLogitsKD', prefix='detrdistill.logits'),
    feature=dict(type='TargetAwareFeatureKD', prefix='detrdistill.feature'),
    query_prior=dict(type='QueryPriorAssignment', prefix='detrdistill.query_prior'),
)


@MODELS.register_module()
class DETRDistillDistiller(DETRDistillerBase):
    """DETRDistill's three components, each one switchable.

    * ``logits_kd`` (:class:`HungarianLogitsKD`): progressive Hungarian-matching
      logits distillation, in every decoder layer;
    * ``feature_kd`` (:class:`TargetAwareFeatureKD`): neck features distilled
      under masks built from the teacher's top-k queries;
    * ``query_prior`` (:class:`QueryPriorAssignment`): the teacher's queries
      in the student's decoder, supervised with the ground truth under the
      teacher's assignment.

    Each argument is merged over the component's defaults (``dict()`` keeps
    the defaults, ``None`` switches the component off). Loss keys read
    ``detrdistill.{logits|feature|query_prior}.d{layer}.{loss name}``.

    Args:
        student, teacher, teacher_ckpt, allow_untrained_teacher, init_cfg: see
            :class:`DETRDistillerBase`.
        logits_kd (dict, optional): Defaults to ``dict()`` (on).
        feature_kd (dict, optional): Defaults to ``dict()`` (on).
        query_prior (dict, optional): Defaults to ``dict()`` (on).
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
        components: Optional[dict] = None,
        init_cfg: OptMultiConfig = None,
    ) -> None:
        chosen = dict(logits=logits_kd, feature=feature_kd, query_prior=query_prior)
        own = {
            name: None if cfg is None else {**DETRDISTILL_COMPONENTS[name], **cfg}
            for name, cfg in chosen.items()
        }
        super().__init__(
            student,
            teacher,
            teacher_ckpt,
            allow_untrained_teacher,
            components={**own, **(components or {})},
            init_cfg=init_cfg,
        )
