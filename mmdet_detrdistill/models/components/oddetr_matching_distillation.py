"""OD-DETR (arXiv 2406.05791), Sec. 3: matching distillation, the default teacher guidance."""

from functools import partial
from typing import Dict, List, Optional, Sequence

from mmdet.models.task_modules import BaseAssigner
from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, InstanceList
from torch import Tensor, nn

from ..common import OWN_GROUP, DecoderOutputs, pred_instances
from ..dense_heads import DecoderLoss, ImageAssigners, decoder_loss_keys
from ..losses import MultiTargetQualityFocalLoss
from ..task_modules.pairing import SolvedPairings
from ..task_modules.twin_targets import QueryTargets, twin_query_targets
from .base_component import NO_PAIRS, DistillComponent
from .query_target_losses import query_target_losses
from .query_twins import check_same_num_queries, queries_are_proposals, teacher_twins

TEACHER_LAYERS = ('same', 'last')


@MODELS.register_module()
class ODDETRMatchingDistillation(DistillComponent):
    """OD-DETR, Sec. 3: each student query learns from its own GT and from its twin's.

    In decoder layer l, per image::

        student predictions (layer l) --Hungarian--> own GT of query i    (head's assigner)
        teacher predictions (layer l) --Hungarian--> twin GT of query i   (same costs)
        for the same queries (the EMA decodes the student's query i as its twin i)

        query i's targets: {own GT, twin GT}   (one, two or none; the same GT counts once)
        loss_cls:  MultiTargetQualityFocalLoss, soft target of (i, class c) = the best
                   IoU(box i, target) among i's targets of class c (twin's times twin_weight)
        loss_bbox, loss_iou: the head's L1 and GIoU toward every target box
                   (twin's weighted by twin_weight), normalised by the weighted number
                   of (query, target) pairs, as mmdet normalises by matched queries

    The losses replace the student's own decoder-layer GT losses and keep
    mmdet's keys (``loss_cls``, ``d0.loss_bbox``, ...); the two-stage encoder
    proposals and DINO's denoising queries keep mmdet's losses (the head gives
    this loss its matching queries only). Twin i is the teacher's output for
    the student's query i (:mod:`.query_twins`): its own outputs for learned
    queries, ``teacher_on_student_queries`` on a two-stage student.

    What the paper leaves open, chosen here (``configs/oddetr/README.md``):
    every decoder layer, each matched on the teacher's *same* layer
    (``teacher_layer='same'``; ``'last'``: the teacher's last layer for every
    student layer); a twin's target weighs as much as the own one
    (``twin_weight=1``: its QFL quality and its box terms are multiplied by it;
    0 is QFL on the student's own matching alone); the class loss weight is the
    head's (its focal loss's). With a twin that matched what its query matched
    (identical twins) the losses are mmdet's with ``QualityFocalLoss``.

    Args:
        prefix (str): Name in logs. Defaults to ``'oddetr.guided'``.
        twin_weight (float): Weight of the twin's targets, in [0, 1]. Defaults to 1.0.
        teacher_layer (str): ``'same'`` or ``'last'``. Defaults to ``'same'``.
        loss_cls (dict, optional): The class loss. Defaults to None:
            ``MultiTargetQualityFocalLoss(beta=2, loss_weight=<the head's loss_cls weight>)``.
    """

    overrides_gt_assignment = True

    def __init__(
        self,
        prefix: str = 'oddetr.guided',
        twin_weight: float = 1.0,
        teacher_layer: str = 'same',
        loss_cls: Optional[ConfigType] = None,
    ) -> None:
        super().__init__(prefix)
        if not 0.0 <= twin_weight <= 1.0:
            raise ValueError(f'twin_weight must be in [0, 1], got {twin_weight}')
        if teacher_layer not in TEACHER_LAYERS:
            raise ValueError(
                f'teacher_layer must be one of {TEACHER_LAYERS}, got {teacher_layer!r}'
            )
        self.twin_weight, self.teacher_layer = twin_weight, teacher_layer
        #: None until :meth:`bind` gives the head's class-loss weight
        self.loss_cls: Optional[nn.Module] = None if loss_cls is None else MODELS.build(loss_cls)

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        check_same_num_queries(self.config_keys, student, teacher)
        depths = student.decoder.num_layers, teacher.decoder.num_layers
        if self.teacher_layer == 'same' and depths[0] != depths[1]:
            raise ValueError(
                f"{self.config_keys.config}: teacher_layer='same' matches student layer l "
                f'with teacher layer l, but the student has {depths[0]} decoder layers and the '
                f"teacher {depths[1]}; set teacher_layer='last'"
            )
        super().bind(student, teacher)
        if self.loss_cls is None:
            weight = student.bbox_head.loss_cls.loss_weight
            self.loss_cls = MultiTargetQualityFocalLoss(beta=2.0, loss_weight=weight)
        self.queries_are_proposals = queries_are_proposals(student)

    def gt_decoder_loss(
        self,
        teacher_out: Optional[DecoderOutputs],
        img_metas: List[dict],
        teacher_on_student_queries: Optional[DecoderOutputs] = None,
    ) -> DecoderLoss:
        """The student's decoder-layer GT losses of this step: :meth:`decoder_losses` with
        the twins' predictions of every teacher layer, (L_t, bs, N, C) and (L_t, bs, N, 4).

        Raises:
            ValueError: The student is two-stage and ``teacher_on_student_queries``
                is not given.
        """
        twins = teacher_twins(
            self.config_keys, self.queries_are_proposals, teacher_out, teacher_on_student_queries
        )
        twin_cls, twin_box = (x.detach() for x in twins.group(OWN_GROUP))
        return partial(self.decoder_losses, twin_cls=twin_cls, twin_box=twin_box)

    def decoder_losses(
        self,
        all_layers_cls_scores: Tensor,
        all_layers_bbox_preds: Tensor,
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        layer_assigners: Sequence[ImageAssigners],
        twin_cls: Tensor,
        twin_box: Tensor,
    ) -> Dict[str, Tensor]:
        """Every decoder layer's losses over its (query, target) pairs, mmdet's keys.

        Args:
            all_layers_cls_scores (Tensor): The student's logits, (L, bs, N, C).
            all_layers_bbox_preds (Tensor): Its normalised cxcywh boxes, (L, bs, N, 4).
            batch_gt_instances (list[InstanceData]): GT per image.
            batch_img_metas (list[dict]): Image metas.
            layer_assigners (Sequence): Per layer, the student's assigner of each image
                (None: the head's).
            twin_cls (Tensor): The twins' logits per teacher layer, (L_t, bs, N, C).
            twin_box (Tensor): Their boxes, (L_t, bs, N, 4).
        """
        head = self.student.bbox_head
        losses = (self.loss_cls, head.loss_bbox, head.loss_iou)
        gts, metas = batch_gt_instances, batch_img_metas
        per_layer = []
        for layer, (cls, box) in enumerate(zip(all_layers_cls_scores, all_layers_bbox_preds)):
            twin = layer if self.teacher_layer == 'same' else -1
            twins = (twin_cls[twin], twin_box[twin])
            targets = self.layer_targets((cls, box), twins, gts, metas, layer_assigners[layer])
            args = (cls, box, gts, metas, targets, losses, head.sync_cls_avg_factor)
            per_layer.append(query_target_losses(*args))
        return decoder_loss_keys(per_layer)

    def layer_targets(
        self,
        student: Sequence[Tensor],
        twins: Sequence[Tensor],
        batch_gt_instances: InstanceList,
        batch_img_metas: List[dict],
        assigners: ImageAssigners,
    ) -> List[QueryTargets]:
        """Per image, the student's own matches and its twins' (:func:`twin_query_targets`).

        Args:
            student (Sequence[Tensor]): One layer's logits (bs, N, C) and boxes (bs, N, 4).
            twins (Sequence[Tensor]): The twins' logits and boxes, same shapes.
            batch_gt_instances (list[InstanceData]): GT per image.
            batch_img_metas (list[dict]): Image metas.
            assigners (Sequence[BaseAssigner], optional): The student's per image
                (None: the head's).
        """
        head_assigner: BaseAssigner = self.student.bbox_head.assigner
        assigners = assigners or [None] * len(batch_img_metas)
        own_preds = pred_instances(*(x.detach() for x in student), batch_img_metas)
        twin_preds = pred_instances(*twins, batch_img_metas)
        targets = []
        for own, twin, gt, meta, assigner in zip(
            own_preds, twin_preds, batch_gt_instances, batch_img_metas, assigners
        ):
            own_match = (assigner or head_assigner).assign(own, gt, img_meta=meta)
            twin_match = head_assigner.assign(twin, gt, img_meta=meta)
            targets.append(twin_query_targets(own_match, twin_match, self.twin_weight))
        return targets

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings = NO_PAIRS,
    ) -> Dict[str, Tensor]:
        """No loss of its own: it changes the student's GT losses (:meth:`gt_decoder_loss`)."""
        return {}

    def extra_repr(self) -> str:
        return (
            f'{super().extra_repr()}, twin_weight={self.twin_weight}, '
            f'teacher_layer={self.teacher_layer!r}'
        )
