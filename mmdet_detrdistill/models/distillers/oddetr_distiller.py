"""OD-DETR: online distillation from an EMA teacher (arXiv 2406.05791)."""

from typing import Dict, Optional

import torch
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor, nn

from ..common import OWN_GROUP, STUDENT_QUERY_GROUP, DecoderOutputs, QueryGroup
from ..components.config_keys import preset_keys, require_dict
from ..detectors.query_group_mixin import DECODER_INPUTS
from .base_distiller import DETRDistillerBase

ODDETR_COMPONENTS = dict(
    # the paper's matching distillation; the blended-cost variant (the default before
    # 2026-12): guided_assignment=dict(type='ODDETRGuidedAssignment', alpha=0.5)
    guided=dict(type='ODDETRMatchingDistillation', prefix='oddetr.guided'),
    # class scores and boxes, the boxes weighted by the teacher's confidence: see the class
    # docstring
    init_query=dict(type='InitialQueryKD', prefix='oddetr.init_query'),
    aux=dict(type='AuxiliaryQueryGroups', prefix='oddetr.aux'),
)
# the argument that configures each component, for error messages
ODDETR_ARGS = dict(guided='guided_assignment', init_query='init_query', aux='aux_groups')
DEFAULT_EMA = dict(type='ExpMomentumEMA', momentum=1e-3, gamma=100)


@MODELS.register_module()
class ODDETRDistiller(DETRDistillerBase):
    """OD-DETR: the student distils from its own exponential moving average.

    The teacher is ``ema`` (mmdet's ``ExpMomentumEMA`` by default: ``X_ema
    <- (1 - m_t) X_ema + m_t X`` with ``m_t = (1 - m) exp(-(1 + t) / gamma) +
    m``, a warm-up from following the student closely to momentum m). It is
    updated from the student at the start of every training forward, i.e.
    after each optimizer step, under no_grad, and always runs in eval mode.
    Unlike an external teacher it is part of ``state_dict()`` (keys
    ``ema_teacher.*``, with its step count), so a resumed run continues with
    the same teacher; it has no gradients, so the optimizer and DDP leave it
    alone. The EMA is also a result in its own right (the paper reports both):
    :attr:`ema_model` predicts with it, ``StudentAndEMAValLoop`` (the OD-DETR
    configs' ``val_cfg``) evaluates it after the student at every validation
    (``ema/coco/bbox_mAP``), and :func:`export_student` exports the student, or
    with ``ema=True`` the EMA model.

    Components (each merged over its defaults; ``None`` switches it off):

    * ``guided_assignment`` (:class:`ODDETRMatchingDistillation`, the
      paper's matching distillation): the student and the teacher are each
      Hungarian-matched to the GT, and student query i learns from its own
      GT and from the GT its twin (teacher query i) was matched to (class:
      multi-target quality focal loss; boxes: L1 + GIoU toward both), in
      every decoder layer. ``dict(type='ODDETRGuidedAssignment', alpha=0.5)``
      is the blended-cost variant: one matching on a mix of the two models'
      costs, mmdet's losses. On a two-stage student (Deformable DETR
      two-stage, DINO), where each model's queries are its own top-k encoder
      proposals, the teacher decodes the *student's* proposals for either
      (:meth:`teacher_on_queries`, one more pass of the teacher's decoder on
      its encoder output, without grad);
    * ``init_query`` (:class:`InitialQueryKD`): the teacher's initial
      queries run through the student's decoder, and their predictions are
      constrained to the teacher's, query by query, layer by layer (on
      two-stage, the teacher's own proposals, paired with the teacher's
      outputs for them): class scores (soft-label BCE) and, as in the paper,
      boxes (L1 1, GIoU 0.5), each query's box terms weighted by the
      teacher's confidence in it (its highest class probability). Uniform
      box weights (L1 5, GIoU 2) collapse training: between a model and its
      own EMA the student lowers them by saturating its box sigmoids (GT box
      loss 6.2 at iteration 100 against 1.5 alone, AP 0). Against class
      scores only, the weighted boxes gave equal or better AP on 2 families
      x 3 seeds (DAB +0.2 on every seed, Conditional -0.1 in the mean,
      within the spread; docs/reports/2026-11-30_accuracy_cpu.md), and are
      the default since 2026-11-30. Class scores only:
      ``init_query=dict(losses=dict(loss_bbox=None, loss_iou=None))``; the
      EMA's K most confident initial queries only (not the paper's; a
      cheaper variant for DINO's 900): ``init_query=dict(num_queries=K)``;
    * ``aux_groups`` (:class:`AuxiliaryQueryGroups`): per GT box, the two
      least-cost teacher queries of each decoding stage form groups trained
      to predict that box.

    ``layer_match_instability`` (the fraction of GT boxes whose matched
    query changes between consecutive decoder layers) is logged every
    iteration; OD-DETR's instability (across epochs) is
    :class:`MatchInstabilityHook`'s.

    Args:
        student (dict): mmdet detector config of the student.
        ema (dict): mmengine/mmdet averaged-model config (``model`` is the
            student), merged over ``ExpMomentumEMA(momentum=1e-3, gamma=100)``.
        guided_assignment (dict, optional): Defaults to ``dict()`` (on).
        init_query (dict, optional): Defaults to ``dict()`` (on).
        aux_groups (dict, optional): Defaults to ``dict()`` (on).
        components (dict, optional): More components to mix in. Defaults to None.
        log_match_instability (bool): Defaults to True.
        init_cfg (dict, optional): Defaults to None.
        backbone (dict, optional): The ``init_detector`` marker, see
            :class:`DETRDistillerBase`. Defaults to None.
    """

    _teacher_in_module_tree = True
    _decodes_more_on_teacher_memory = True  # teacher_on_queries
    #: a plain student checkpoint (``load_from``) starts the EMA teacher from it too
    _warm_start_targets = ('student.', 'ema_teacher.module.')

    def __init__(
        self,
        student: ConfigType,
        ema: ConfigType = DEFAULT_EMA,
        guided_assignment: Optional[dict] = dict(),
        init_query: Optional[dict] = dict(),
        aux_groups: Optional[dict] = dict(),
        components: Optional[dict] = None,
        log_match_instability: bool = True,
        init_cfg: OptMultiConfig = None,
        backbone: OptConfigType = None,
    ) -> None:
        require_dict(ema, 'model.ema', 'dict(momentum=1e-3)')
        self._ema_cfg = {**DEFAULT_EMA, **ema}
        chosen = dict(guided=guided_assignment, init_query=init_query, aux=aux_groups)
        keys = preset_keys(chosen, ODDETR_ARGS, components)
        own = {
            name: None if cfg is None else {**ODDETR_COMPONENTS[name], **cfg}
            for name, cfg in chosen.items()
        }
        super().__init__(
            student,
            teacher=None,
            components={**own, **(components or {})},
            log_match_instability=log_match_instability,
            init_cfg=init_cfg,
            backbone=backbone,
            component_keys=keys,
        )

    def _init_teacher(self, teacher, ckpt, allow_untrained) -> nn.Module:
        """The EMA of the student, registered as ``ema_teacher``."""
        self.ema_teacher = MODELS.build(self._ema_cfg, default_args=dict(model=self.student))
        return self.ema_teacher.module.eval()

    @property
    def ema_model(self) -> nn.Module:
        """The EMA model: a detector of the student's class (``ema_teacher.module``).

        It predicts through its own ``val_step`` / ``test_step`` / ``predict`` (its data
        preprocessor is a copy of the student's); the distiller's own prediction stays the
        student's.
        """
        return self.ema_teacher.module

    def init_weights(self) -> None:
        """Initialise the student, then restart the EMA teacher as its exact copy.

        The averaged model is a deep copy of the student taken at construction, before
        ``init_weights``, and mmengine's ``init_weights`` does not reach into it (an ``nn.Module``
        without ``init_weights``). Left alone, the teacher would hold the student's
        pre-initialisation weights (no pretrained backbone; uninitialised memory in parameters
        created as ``torch.Tensor(n, d)``, e.g. Deformable DETR's ``level_embed``) until the
        first training step copies the student: any loss computed before it (evaluation-mode
        forwards, benchmarks) distilled from garbage.
        """
        super().init_weights()
        self.ema_teacher.module.load_state_dict(self.student.state_dict())

    @torch.no_grad()
    def update_teacher(self) -> None:
        """One EMA step from the student's current weights."""
        self.ema_teacher.update_parameters(self.student)

    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Update the EMA teacher (training only), then distil from it."""
        if self.training:
            self.update_teacher()
        return super().loss(batch_inputs, batch_data_samples)

    def student_gt_loss(
        self,
        outputs: DecoderOutputs,
        batch_data_samples: SampleList,
        teacher_out: Optional[DecoderOutputs] = None,
        teacher_on_student_queries: Optional[DecoderOutputs] = None,
    ) -> Dict[str, Tensor]:
        """The base class's, given the teacher's outputs for the student's own queries
        (``teacher_on_student_queries``) where those are the student's own encoder
        proposals (two-stage) and a component guides the assignment: one more pass of the
        teacher's decoder (:meth:`teacher_on_queries`)."""
        guided = any(c.overrides_gt_assignment for c in self.components.values())
        two_stage = getattr(self.student, 'as_two_stage', False)
        if teacher_on_student_queries is None and teacher_out is not None and guided and two_stage:
            teacher_on_student_queries = self.teacher_on_queries(
                outputs.own_queries, teacher_out, batch_data_samples
            )
        return super().student_gt_loss(
            outputs, batch_data_samples, teacher_out, teacher_on_student_queries
        )

    @torch.no_grad()
    def teacher_on_queries(
        self, queries: QueryGroup, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> DecoderOutputs:
        """The teacher's outputs for the student's two-stage queries, as its own group.

        The teacher embeds the student's proposals (``queries.reference``) as it
        embeds its own (:meth:`GroupDeformableDETR.proposal_query_group`) and
        decodes them alone on its encoder output of this step
        (:meth:`QueryGroupMixin.decode_query_group`: neither its encoder nor
        its own queries run again; the outputs are those the group gets next
        to the teacher's own queries). Query i of the result is student query i.

        Returns:
            DecoderOutputs: Per-layer predictions for the student's queries,
            whose own group is named ``'student_queries'``.
        """
        group = self.teacher.proposal_query_group(STUDENT_QUERY_GROUP, queries.reference.detach())
        head_inputs = self.teacher.decode_query_group(
            teacher_out.head_inputs[DECODER_INPUTS], group
        )
        cls_scores, bbox_preds = self.teacher.bbox_head(
            head_inputs['hidden_states'], head_inputs['references']
        )
        return DecoderOutputs(
            cls_scores, bbox_preds, {OWN_GROUP: slice(0, group.num_queries)}, group
        )
