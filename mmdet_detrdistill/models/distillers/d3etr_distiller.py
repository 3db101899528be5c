"""D3ETR: decoder distillation with MixMatcher (arXiv 2211.09768)."""

import dataclasses
from typing import Dict, List, Optional, Union

import torch
from mmdet.registry import MODELS, TASK_UTILS
from mmdet.structures import SampleList
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmdet.utils import ConfigType, OptMultiConfig
from torch import Tensor, nn

from ..detectors import OWN_GROUP
from ..layers import QueryGroup
from .base_distiller import DETRDistillerBase
from .decoder_outputs import DecoderOutputs
from .pairs import gather_queries, gather_square

TEACHER_QUERY_GROUP = 'teacher_queries'
DEFAULT_LOSSES = dict(
    loss_cls=dict(type='SoftBCEDistillLoss', loss_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0),
    loss_self_attn=dict(type='AttentionMapDistillLoss', loss_weight=1e4),
    loss_cross_attn=dict(type='AttentionMapDistillLoss', loss_weight=1e3),
)


@MODELS.register_module()
class D3ETRDistiller(DETRDistillerBase):
    """D3ETR: distil a DETR's decoder through MixMatcher.

    In every student decoder layer l (paired with a teacher layer by
    :meth:`MixMatcher.layer_pairs`):

    * ``adaptive``: the student's own queries are Hungarian-matched to the
      teacher's predictions of layer l;
    * ``fixed``: the teacher's queries run through the student decoder as the
      extra group ``'teacher_queries'`` (isolated from the student's own by
      the self-attention mask) and query i is paired with teacher query i.

    For the pairs of each kind: class scores (:class:`SoftBCEDistillLoss`),
    boxes (L1 on normalised cxcywh, GIoU on pixel xyxy, both averaged over
    pairs), self-attention among matched queries and their cross-attention
    to the memory (:class:`AttentionMapDistillLoss`), both reordered by the
    match. Loss keys read ``d3etr.{adaptive|fixed}.d{layer}.{loss name}``.
    The student's own ground-truth losses are kept unchanged.

    Args:
        student, teacher, teacher_ckpt, allow_untrained_teacher, init_cfg: see
            :class:`DETRDistillerBase`.
        matcher (dict): MixMatcher config. Defaults to ``dict(type='MixMatcher')``.
        adaptive_losses (dict, optional): Losses for adaptive pairs, merged
            over the defaults (class 1, L1 5, GIoU 2, self-attention 1e4,
            cross-attention 1e3); a ``None`` entry switches that loss off.
        fixed_losses (dict, optional): Same, for fixed pairs.
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
        init_cfg: OptMultiConfig = None,
    ) -> None:
        super().__init__(student, teacher, teacher_ckpt, allow_untrained_teacher, init_cfg)
        self.matcher = TASK_UTILS.build(matcher)
        self.adaptive_losses = self._build_losses(adaptive_losses, 'adaptive_losses')
        self.fixed_losses = self._build_losses(fixed_losses, 'fixed_losses')
        if self.matcher.fixed:
            self._check_fixed_matching()

    @staticmethod
    def _build_losses(cfg: Optional[dict], key: str) -> nn.ModuleDict:
        cfg = dict(cfg or {})
        unknown = sorted(set(cfg) - set(DEFAULT_LOSSES))
        if unknown:
            raise KeyError(
                f'model.{key}: unknown loss keys {unknown}; allowed keys are '
                f'{sorted(DEFAULT_LOSSES)} (set one to None to switch it off)'
            )
        merged = {**DEFAULT_LOSSES, **cfg}
        return nn.ModuleDict({k: MODELS.build(v) for k, v in merged.items() if v is not None})

    def _check_fixed_matching(self) -> None:
        teacher_fmt, student_fmt = self.teacher.query_format(), self.student.query_format()
        if teacher_fmt != student_fmt:
            raise ValueError(
                "fixed matching feeds the teacher's queries to the student decoder, which needs "
                f'the same query format: teacher {type(self.teacher).__name__} {teacher_fmt}, '
                f'student {type(self.student).__name__} {student_fmt} (family, embed_dims, ...). '
                'Set model.matcher.fixed=False to distil with adaptive matching only.'
            )

    def records_attention(self) -> bool:
        """Record attention maps only if an attention loss is on."""
        names = {'loss_self_attn', 'loss_cross_attn'}
        used = set(self.adaptive_losses) if self.matcher.adaptive else set()
        used |= set(self.fixed_losses) if self.matcher.fixed else set()
        return bool(names & used)

    def extra_query_groups(self, teacher_out: DecoderOutputs, batch_size: int) -> List[QueryGroup]:
        """The teacher's queries, for fixed matching."""
        if not self.matcher.fixed:
            return []
        return [dataclasses.replace(teacher_out.own_queries, name=TEACHER_QUERY_GROUP)]

    def distill_loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
    ) -> Dict[str, Tensor]:
        """Adaptive and fixed pair losses of every decoder layer."""
        img_metas = [s.metainfo for s in batch_data_samples]
        s_cls, s_box = student_out.group(OWN_GROUP)
        t_cls, t_box = teacher_out.group(OWN_GROUP)
        bs, num_t = t_cls.shape[1:3]
        losses = {}
        for s_l, t_l in self.matcher.layer_pairs(student_out.num_layers, teacher_out.num_layers):
            if self.matcher.adaptive:
                pairs = self.matcher.adaptive_match(
                    s_cls[s_l], s_box[s_l], t_cls[t_l], t_box[t_l], img_metas
                )
                losses.update(
                    self._pair_losses(
                        'adaptive', OWN_GROUP, s_l, t_l, pairs, student_out, teacher_out, img_metas
                    )
                )
            if self.matcher.fixed:
                pairs = self.matcher.fixed_match(bs, num_t, t_cls.device)
                losses.update(
                    self._pair_losses(
                        'fixed',
                        TEACHER_QUERY_GROUP,
                        s_l,
                        t_l,
                        pairs,
                        student_out,
                        teacher_out,
                        img_metas,
                    )
                )
        return losses

    def _pair_losses(
        self,
        kind: str,
        group: str,
        s_l: int,
        t_l: int,
        pairs,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        img_metas: List[dict],
    ) -> Dict[str, Tensor]:
        """All losses of one matching kind in one layer (pairs: (bs, K) each)."""
        s_idx, t_idx = pairs
        loss_fns = self.adaptive_losses if kind == 'adaptive' else self.fixed_losses
        s_cls, s_box = (x[s_l] for x in student_out.group(group))
        t_cls, t_box = (x[t_l] for x in teacher_out.group(OWN_GROUP))
        s_cls, s_box = gather_queries(s_cls, s_idx), gather_queries(s_box, s_idx)  # (bs, K, .)
        t_cls, t_box = gather_queries(t_cls, t_idx), gather_queries(t_box, t_idx)
        num_pairs = max(s_idx.numel(), 1)
        out = {}
        if 'loss_cls' in loss_fns:
            out['loss_cls'] = loss_fns['loss_cls'](s_cls.flatten(0, 1), t_cls.flatten(0, 1))
        if 'loss_bbox' in loss_fns:
            out['loss_bbox'] = loss_fns['loss_bbox'](
                s_box.flatten(0, 1).float(), t_box.flatten(0, 1).float(), avg_factor=num_pairs
            )
        if 'loss_iou' in loss_fns:
            scale = torch.stack(
                [
                    s_box.new_tensor([w, h, w, h]).float()
                    for h, w in (m['img_shape'] for m in img_metas)
                ]
            )[:, None]
            out['loss_iou'] = loss_fns['loss_iou'](
                (bbox_cxcywh_to_xyxy(s_box.float()) * scale).flatten(0, 1),
                (bbox_cxcywh_to_xyxy(t_box.float()) * scale).flatten(0, 1),
                avg_factor=num_pairs,
            )
        if 'loss_self_attn' in loss_fns:
            out['loss_self_attn'] = loss_fns['loss_self_attn'](
                gather_square(student_out.self_attn(group, s_l), s_idx),
                gather_square(teacher_out.self_attn(OWN_GROUP, t_l), t_idx),
            )
        if 'loss_cross_attn' in loss_fns:
            out['loss_cross_attn'] = loss_fns['loss_cross_attn'](
                gather_queries(student_out.cross_attn(group, s_l), s_idx),
                gather_queries(teacher_out.cross_attn(OWN_GROUP, t_l), t_idx),
            )
        return {f'd3etr.{kind}.d{s_l}.{name}': value for name, value in out.items()}
