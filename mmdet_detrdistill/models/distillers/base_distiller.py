"""Base class of DETR distillers: a trainable student and a frozen teacher."""

from contextlib import nullcontext
from typing import Collection, Dict, FrozenSet, List, Optional, Sequence, Tuple, Union

import torch
from mmdet.models.detectors.base import BaseDetector
from mmdet.registry import MODELS
from mmdet.structures import OptSampleList, SampleList
from mmdet.utils import ConfigType, OptConfigType, OptMultiConfig
from torch import Tensor, nn

from ...utils.checkpoint import load_weights_strictly
from ...utils.finite import check_finite_loss, check_finite_weights
from ...utils.paths import expand_user_path
from ..common import OWN_GROUP, DecoderOutputs, QueryGroup
from ..components.config_keys import COMPONENTS_EXAMPLE, ComponentKeys, require_dict
from ..detectors import QueryGroupMixin, to_group_detector_cfg
from ..detectors.query_group_mixin import DECODER_INPUTS
from ..layers import AttentionRecorder, group_blocks
from ..task_modules import RecordingAssigner, layer_match_instability
from ..task_modules.pairing import solve_pairings
from .components_builder import build_components, unique_query_groups
from .inference_guard import check_not_for_inference
from .teacher_config import check_same_classes, check_same_preprocessing, load_teacher_model_cfg
from .warm_start import check_warm_start_share, reapply_pretrained, remap_plain_student_state


class DETRDistillerBase(BaseDetector):
    """A student DETR trained with knowledge from a frozen teacher DETR.

    * ``student`` is a submodule: the only parameters, the only weights in
      ``state_dict()`` (keys ``student.*``), what the optimizer and DDP see.
      Prediction (``predict``/``tensor`` modes) and the data preprocessor are
      the student's.
    * The teacher is held *outside* the module tree: never in ``parameters()``,
      ``state_dict()``, the optimizer or DDP, never touched by
      ``init_weights``'s mmengine initialisation. It is loaded strictly from
      ``teacher_ckpt`` when training starts (:meth:`load_teacher_weights`:
      from ``init_weights``, or the first ``loss``), so building, testing and
      predicting (the student's) need no teacher file; non-finite teacher
      weights are refused. It is frozen, always in eval mode
      (Conditional/Deformable DETR use dropout), run under
      ``torch.no_grad()``, and moved by ``.to()``/``.cuda()`` with the rest.
    * ``load_from`` (or ``init_cfg=dict(type='Pretrained', ...)``) may be a
      distiller checkpoint or a plain checkpoint of the student detector: the
      latter warm-starts the student (see :mod:`.warm_start`).
    * A non-finite loss stops training before the optimizer update, naming
      the loss keys and the iteration (:meth:`parse_losses`).

    What is distilled is a set of named, independent *components*
    (:class:`DistillComponent`): each may add query groups to the student's
    decoder and adds its losses. Method presets (D3ETR, DETRDistill, OD-DETR)
    fill ``components`` from their own arguments; ``ConfigurableDistiller``
    takes them as written, to mix methods.

    One training step (:meth:`loss`); every arrow is an argument or a return
    value, nothing travels in ``img_meta`` or hooks::

        images, data samples
          |
          +--> teacher (eval, no grad) ----------------------> teacher_out: DecoderOutputs
          |      decoder_outputs(teacher, groups=())             (per-layer logits, boxes,
          |                                                       own queries, attention
          |                                                       records of the kinds a
          |                                                       loss reads: attention_kinds)
          |                                                             |
          |    extra_query_groups(teacher_out)  <------------------------+
          |      each component's query_groups(), deduplicated          |
          |      e.g. 'teacher_queries' (D3ETR fixed / DETRDistill      |
          |      query prior), 'aux0..' (OD-DETR), 'init_queries'       |
          |              | groups: list[QueryGroup]                     |
          v              v                                              |
        student: decoder_outputs(student, groups) --> student_out       |
          decoder queries  [ own | group 1 | ... ]  isolated from       |
          each other (mask, or folded into the batch axis by the        |
          group decoder layers: FoldedGroupLayout)                      |
                         |                                              |
                         +--> student_gt_loss(student_out, teacher_out) |
                         |      mmdet's head losses on 'own' only, per  |
                         |      layer; image b assigned by assigners[b] |
                         |      (a component may give them, or compute  |
                         |      the decoder layers' losses itself:      |
                         |      OD-DETR's matching distillation)        |
                         |      -> loss_cls, d0.* ...                   |
                         |                                              |
                         +--> solve_pairings(each component's pairings)<+
                         |      each distinct request once: Hungarian   |
                         |      or index pairs per layer -> solved      |
                         |                                              |
                         +--> component.loss(student_out, teacher_out, <+
                                samples, its solved pairs)
                                -> 'd3etr.adaptive.d0.loss_cls', ...

    The teacher and student outputs share one type (:class:`DecoderOutputs`,
    ``models/common``); a component reads groups by name
    (``outputs.group('teacher_queries')``).

    Args:
        student (dict): mmdet detector config of the student.
        teacher (dict | str): mmdet detector config of the teacher, or the
            path of a config file (``'mmdet::...'`` or a file).
        teacher_ckpt (str, optional): Teacher checkpoint: a path, an
            ``http(s)://`` URL (downloaded once into the cache ``load_from``
            uses) or a path mmengine's fileio reads. Required unless
            ``allow_untrained_teacher`` is True. Defaults to None.
        allow_untrained_teacher (bool): Allow ``teacher_ckpt=None`` and
            distil from a randomly initialised teacher (tests and demos
            only). Defaults to False.
        components (dict[str, dict], optional): Distillation components by
            name; a ``None`` value is switched off. Defaults to None.
        log_match_instability (bool): Log ``layer_match_instability`` (see
            :meth:`student_gt_loss`). Defaults to True.
        init_cfg (dict, optional): Initialisation config. Defaults to None.
        component_keys (dict[str, ComponentKeys], optional): For method presets:
            the config keys that configure each of their components, so that
            errors name them. Defaults to None: ``model.components.<name>``.
        backbone (dict, optional): Not a model part: the marker that lets
            mmdet's ``init_detector`` reach the distiller, which then says to
            export the student (:mod:`.inference_guard`). Defaults to None.
    """

    #: True for a teacher that is a registered submodule (OD-DETR's EMA)
    _teacher_in_module_tree = False
    #: whether the teacher decodes more queries on its encoder output of the step after its
    #: own pass (``QueryGroupMixin.decode_query_group``, OD-DETR's twins): if not, its decoder
    #: inputs (the encoder memory) are let go as soon as its outputs are taken
    _decodes_more_on_teacher_memory = False

    def __init__(
        self,
        student: ConfigType,
        teacher: Union[str, ConfigType],
        teacher_ckpt: Optional[str] = None,
        allow_untrained_teacher: bool = False,
        components: Optional[Dict[str, OptConfigType]] = None,
        log_match_instability: bool = True,
        init_cfg: OptMultiConfig = None,
        component_keys: Optional[Dict[str, ComponentKeys]] = None,
        backbone: OptConfigType = None,
    ) -> None:
        check_not_for_inference(backbone, type(self).__name__)
        super().__init__(init_cfg=init_cfg)
        require_dict(student, 'model.student', "dict(type='ConditionalDETR', ...)")
        require_dict(components, 'model.components', COMPONENTS_EXAMPLE, True)
        teacher_ckpt = expand_user_path(teacher_ckpt)
        self.student = MODELS.build(to_group_detector_cfg(student, 'student'))
        self.data_preprocessor = self.student.data_preprocessor
        teacher_model = self._init_teacher(teacher, teacher_ckpt, allow_untrained_teacher)
        check_same_preprocessing(self.student.data_preprocessor, teacher_model.data_preprocessor)
        check_same_classes(self.student, teacher_model, teacher)
        # object.__setattr__ keeps the teacher out of the module tree
        object.__setattr__(self, 'teacher', teacher_model)
        self.teacher_ckpt = teacher_ckpt
        self._teacher_weights_pending = teacher_ckpt is not None
        self.components = build_components(
            components or {}, self.student, self.teacher, component_keys
        )
        overriding = [c.config_keys for c in self.components.values() if c.overrides_gt_assignment]
        if len(overriding) > 1:
            raise ValueError(
                f"{[k.config for k in overriding]} all change the student's ground-truth "
                f'assignment; keep one of them (switch the others off: '
                f'{", ".join(k.switch_off for k in overriding)})'
            )
        self.log_match_instability = log_match_instability

    def _init_teacher(
        self, teacher: Union[str, ConfigType], ckpt: Optional[str], allow_untrained: bool
    ) -> nn.Module:
        """The frozen teacher (subclasses may keep another kind of teacher)."""
        return self._build_teacher(teacher, ckpt, allow_untrained)

    @staticmethod
    def _build_teacher(
        teacher: Union[str, ConfigType], ckpt: Optional[str], allow_untrained: bool
    ) -> nn.Module:
        if ckpt is None and not allow_untrained:
            raise ValueError(
                'model.teacher_ckpt is not set: a distiller needs a trained teacher. Set '
                'model.teacher_ckpt=PATH (e.g. --cfg-options model.teacher_ckpt=PATH), or set '
                'model.allow_untrained_teacher=True if a random teacher is intended (tests).'
            )
        model = MODELS.build(to_group_detector_cfg(load_teacher_model_cfg(teacher), 'teacher'))
        if ckpt is None:
            model.init_weights()
        model.requires_grad_(False)  # ckpt: loaded by load_teacher_weights, not needed to test
        return model.eval()

    # -- loading --
    def load_teacher_weights(self) -> None:
        """Load ``teacher_ckpt`` into the teacher (once) and refuse non-finite weights.

        Deferred from the build: testing and predicting run the student alone and need no
        teacher file. ``init_weights`` calls it (the Runner, when training starts), and so
        does ``loss`` if nothing did before; weights set on the teacher by hand before then
        are overwritten by the checkpoint.
        """
        if self._teacher_weights_pending:
            load_weights_strictly(self.teacher, self.teacher_ckpt, role='teacher')
            source = f'model.teacher_ckpt={self.teacher_ckpt!r}'
            check_finite_weights(self.teacher, 'teacher', source)
            self._teacher_weights_pending = False

    def init_weights(self) -> None:
        """mmengine's initialisation of the student (and components), then the teacher's
        checkpoint: the Runner calls this when training starts, not when testing.

        A ``Pretrained`` ``init_cfg`` of the student is applied again at the end: mmdet's
        DETRs load it in ``BaseModule.init_weights`` and then re-initialise their encoder and
        decoder (``DETR.init_weights``), which would keep only the backbone and head.
        """
        super().init_weights()
        reapply_pretrained(self.student)
        self.load_teacher_weights()

    #: Where a plain student checkpoint's tensors go (OD-DETR adds its EMA teacher)
    _warm_start_targets: Tuple[str, ...] = ('student.',)

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        """Also accept a plain student checkpoint (:func:`remap_plain_student_state`); refuse
        one that fills too little of the student (:func:`check_warm_start_share`)."""
        remap_plain_student_state(self, state_dict, prefix, self._warm_start_targets)
        check_warm_start_share(self, state_dict, prefix)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def parse_losses(self, losses: Dict[str, Tensor]) -> Tuple[Tensor, Dict[str, Tensor]]:
        """mmengine's sum of the losses; a non-finite sum raises before the update."""
        total, log_vars = super().parse_losses(losses)
        check_finite_loss(total, log_vars)
        return total, log_vars

    # -- the teacher stays frozen, in eval mode, and on the student's device --
    def train(self, mode: bool = True) -> 'DETRDistillerBase':
        """Set the student's mode; the teacher stays in eval mode."""
        super().train(mode)
        self.teacher.eval()
        return self

    def _apply(self, fn, *args, **kwargs):
        """Apply ``.to()``/``.cuda()``/``.half()``... to the teacher as well."""
        super()._apply(fn, *args, **kwargs)
        if not self._teacher_in_module_tree:
            self.teacher._apply(fn, *args, **kwargs)
        return self

    def extra_repr(self) -> str:
        return f'teacher={self.teacher.__class__.__name__}, teacher_ckpt={self.teacher_ckpt!r}'

    # -- inference is the student's --
    def extract_feat(self, batch_inputs: Tensor) -> Tuple[Tensor]:
        """Student features."""
        return self.student.extract_feat(batch_inputs)

    def predict(
        self, batch_inputs: Tensor, batch_data_samples: SampleList, rescale: bool = True
    ) -> SampleList:
        """Student predictions (``predict`` mode)."""
        return self.student.predict(batch_inputs, batch_data_samples, rescale=rescale)

    def _forward(self, batch_inputs: Tensor, batch_data_samples: OptSampleList = None):
        """Student raw outputs (``tensor`` mode)."""
        return self.student._forward(batch_inputs, batch_data_samples)

    # -- training --
    def loss(self, batch_inputs: Tensor, batch_data_samples: SampleList) -> Dict[str, Tensor]:
        """Student ground-truth losses plus every component's distillation losses.

        The query pairs the components ask for (:meth:`DistillComponent.pairings`) are solved
        once per distinct request (:func:`solve_pairings`) and passed to their ``loss``.
        """
        self.load_teacher_weights()  # no-op once loaded (init_weights does it in a Runner)
        kinds = self.attention_kinds()
        with torch.no_grad():
            teacher_out = self.decoder_outputs(
                self.teacher, batch_inputs, batch_data_samples, (), kinds
            )
        if not self._decodes_more_on_teacher_memory:  # its encoder memory is not read again
            teacher_out.head_inputs.pop(DECODER_INPUTS, None)
        groups = self.extra_query_groups(teacher_out, batch_data_samples)
        student_out = self.decoder_outputs(
            self.student, batch_inputs, batch_data_samples, groups, kinds
        )
        losses = self.student_gt_loss(student_out, batch_data_samples, teacher_out)
        img_metas = [s.metainfo for s in batch_data_samples]
        requests = [r for c in self.components.values() for r in c.pairings()]
        solved = solve_pairings(requests, student_out, teacher_out, img_metas)  # each once
        for component in self.components.values():
            args = (student_out, teacher_out, batch_data_samples)
            pairs = {r: solved[r] for r in component.pairings()}
            component_losses = component.loss(*args, pairs)
            for key, value in component_losses.items():
                if key in losses:
                    raise KeyError(f'two components write the loss {key!r}: give them prefixes')
                losses[key] = value
        return losses

    @staticmethod
    def decoder_outputs(
        model: QueryGroupMixin,
        batch_inputs: Tensor,
        batch_data_samples: SampleList,
        groups: Sequence[QueryGroup],
        attention_kinds: Collection[str] = (),
    ) -> DecoderOutputs:
        """Run ``model`` with ``groups``; return its per-layer predictions.

        The :class:`AttentionRecorder` (observation only) records the kinds of
        ``attention_kinds`` (``'self'``, ``'cross'``), one record per layer and
        call; a layer's self-attention may run in several calls (a lead, folded
        groups, a tail), and each group's block is looked up in its call
        (:func:`group_blocks`).
        """
        feats = model.extract_feat(batch_inputs)
        kinds = set(attention_kinds)
        modules = {k: m for k, m in model.decoder_attention_modules().items() if k in kinds}
        recorder = AttentionRecorder(modules)
        with recorder if modules else nullcontext():
            head_inputs, slices, own = model.forward_transformer_with_groups(
                feats, batch_data_samples, groups
            )
        cls_scores, bbox_preds = model.bbox_head(
            head_inputs['hidden_states'], head_inputs['references']
        )
        attn = {}
        if 'self' in modules:
            bs = batch_inputs.shape[0]
            attn['self'] = [group_blocks(calls, slices, bs) for calls in recorder.records['self']]
        if 'cross' in modules:
            attn['cross'] = [recorder.record('cross', i) for i in range(len(modules['cross']))]
        by_name = {g.name: g for g in groups}
        return DecoderOutputs(
            cls_scores, bbox_preds, slices, own, attn, head_inputs, feats, groups=by_name
        )

    def student_gt_loss(
        self,
        outputs: DecoderOutputs,
        batch_data_samples: SampleList,
        teacher_out: Optional[DecoderOutputs] = None,
        teacher_on_student_queries: Optional[DecoderOutputs] = None,
    ) -> Dict[str, Tensor]:
        """The student's own mmdet losses, on its own query group only.

        The student's head (``models/dense_heads``: mmdet's, its ``loss_by_feat``
        taking ``layer_assigners``) gets the queries mmdet's head knows: the own
        group, after DINO's denoising queries (which lead in training), and the
        head inputs of its family (``loss_by_feat_kwargs``: two-stage proposals,
        ``dn_meta``); the extra groups follow the own group and are left out.
        A component may give the assigner of each image for every decoder layer
        (OD-DETR's blended assignment, :meth:`DistillComponent.gt_assigners`);
        otherwise it is the head's. A component may instead compute the decoder
        layers' losses itself, given the head's assigners (OD-DETR's matching
        distillation, :meth:`DistillComponent.gt_decoder_loss`). Encoder proposals
        and DN queries keep the head's own. The keys and their order are mmdet's. With
        ``log_match_instability``, ``layer_match_instability`` (not a loss) is the
        fraction of GT boxes whose matched query changes between consecutive decoder
        layers (not OD-DETR's instability, which is across epochs:
        :class:`MatchInstabilityHook`).

        Args:
            outputs (DecoderOutputs): The student's outputs.
            batch_data_samples (list[DetDataSample]): The batch, with ground truth.
            teacher_out (DecoderOutputs, optional): The teacher's outputs. Defaults to None.
            teacher_on_student_queries (DecoderOutputs, optional): The teacher's outputs
                for the student's own queries, where those are not the teacher's own
                (a two-stage student's proposals: :meth:`ODDETRDistiller.teacher_on_queries`).
                Defaults to None.
        """
        head = self.student.bbox_head
        metas = [s.metainfo for s in batch_data_samples]
        num_layers, bs = outputs.cls_scores.shape[:2]
        image_assigners, decoder_loss = [head.assigner] * bs, None
        guides = dict(teacher_out=teacher_out, img_metas=metas)
        guides.update(teacher_on_student_queries=teacher_on_student_queries)
        for component in self.components.values():  # at most one overrides (__init__)
            image_assigners = component.gt_assigners(**guides) or image_assigners
            decoder_loss = component.gt_decoder_loss(**guides) or decoder_loss
        layer_assigners = [list(image_assigners) for _ in range(num_layers)]
        if self.log_match_instability:
            layer_assigners = [[RecordingAssigner(a) for a in layer] for layer in layer_assigners]
        mmdets = slice(0, outputs.slices[OWN_GROUP].stop)  # (DN queries +) own queries
        losses = head.loss_by_feat(
            outputs.cls_scores[:, :, mmdets],
            outputs.bbox_preds[:, :, mmdets],
            batch_gt_instances=[s.gt_instances for s in batch_data_samples],
            batch_img_metas=metas,
            layer_assigners=layer_assigners,
            decoder_loss=decoder_loss,
            **head.loss_by_feat_kwargs(outputs.head_inputs),
        )
        if self.log_match_instability:
            results = [r for layer in layer_assigners for rec in layer for r in rec.results]
            losses['layer_match_instability'] = layer_match_instability(results, num_layers, bs)
        return losses

    # -- what the components define --
    def attention_kinds(self) -> FrozenSet[str]:
        """The kinds of attention maps a component's loss reads (``'self'``,
        ``'cross'``): only those are recorded (recording costs memory)."""
        return frozenset().union(*(c.attention_kinds() for c in self.components.values()))

    def extra_query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        """Query groups the components run in the student's decoder next to its own."""
        return unique_query_groups(
            c.query_groups(teacher_out, batch_data_samples) for c in self.components.values()
        )
