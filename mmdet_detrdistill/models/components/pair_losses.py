"""D3ETR (arXiv 2211.09768), Sec. 3: the distilled knowledge, predictions and attention maps.

Losses between paired student and teacher queries of one decoder layer (also used by
DETRDistill's logits KD and OD-DETR's initial-query constraint).
"""

from typing import Any, Dict, FrozenSet, List, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from torch import Tensor, nn

from ..common import OWN_GROUP, DecoderOutputs, gather_queries, pixel_scale
from ..losses.attention_map_distill_loss import REF_CROSS_ATTN_KEYS, REF_SELF_ATTN_KEYS
from ..task_modules.pairing import Pairs, SolvedPairing

PREDICTION_LOSSES = dict(
    loss_cls=dict(type='BinaryKLDistillLoss', loss_weight=1.0),
    loss_bbox=dict(type='L1Loss', loss_weight=5.0),
    loss_iou=dict(type='GIoULoss', loss_weight=2.0),
)
# the published weights at their reference key counts (see AttentionMapDistillLoss); the
# self-attention blocks among kept queries are renormalised over them (issue #32, item 4;
# `renormalise=False`: the raw blocks, for the ablation)
ATTENTION_LOSSES = dict(
    loss_self_attn=dict(
        type='AttentionMapDistillLoss',
        loss_weight=1e4,
        ref_num_keys=REF_SELF_ATTN_KEYS,
        renormalise=True,
    ),
    loss_cross_attn=dict(
        type='AttentionMapDistillLoss', loss_weight=1e3, ref_num_keys=REF_CROSS_ATTN_KEYS
    ),
)
ALL_PAIR_LOSSES = {**PREDICTION_LOSSES, **ATTENTION_LOSSES}


def merge_loss_cfg(default: Optional[dict], override: Any, key: str) -> Optional[dict]:
    """One loss entry of a config merged over its default, as mmengine merges config dicts.

    ``None`` switches the loss off; a dict without ``type`` (or with the default's ``type``)
    updates the default's arguments (``dict(loss_weight=2.0)`` keeps the default loss and its
    other arguments); a dict with another ``type`` replaces it. (A zero ``loss_weight``
    switches it off too: :func:`build_pair_losses` builds no module for it, :func:`is_off`.)

    Raises:
        TypeError: ``override`` is neither a dict nor None (``key`` names it).
        KeyError: It has no ``type`` and there is no default to take one from.
    """
    if override is None:
        return None
    if not isinstance(override, dict):
        raise TypeError(
            f'{key} must be a loss config dict (e.g. dict(loss_weight=2.0), merged over the '
            f'default) or None to switch it off, got {override!r}'
        )
    if default is not None and override.get('type', default['type']) == default['type']:
        return {**default, **override}
    if 'type' not in override:
        raise KeyError(f'{key} has no `type` and no default loss to merge into: add a `type`')
    return dict(override)


def build_pair_losses(cfg: Optional[dict], defaults: dict, key: str) -> nn.ModuleDict:
    """Loss modules: each entry of ``cfg`` merged over its default (:func:`merge_loss_cfg`);
    none for a loss switched off (``None`` or a zero ``loss_weight``, :func:`is_off`).

    Raises:
        KeyError: ``cfg`` names a loss that does not exist (``key`` is the
            config key, for the message).
    """
    cfg = dict(cfg or {})
    unknown = sorted(set(cfg) - set(ALL_PAIR_LOSSES))
    if unknown:
        raise KeyError(
            f'{key}: unknown loss keys {unknown}; allowed keys are '
            f'{sorted(ALL_PAIR_LOSSES)} (set one to None to switch it off)'
        )
    merged = {
        name: merge_loss_cfg(defaults.get(name, ALL_PAIR_LOSSES[name]), cfg[name], f'{key}.{name}')
        if name in cfg
        else defaults[name]
        for name in {**defaults, **cfg}
    }
    return nn.ModuleDict({k: MODELS.build(v) for k, v in merged.items() if not is_off(v)})


def is_off(cfg: Optional[dict]) -> bool:
    """Whether a merged loss config switches its loss off: ``None``, or a zero
    ``loss_weight`` (its value would be 0 whatever it reads: not computed)."""
    return cfg is None or cfg.get('loss_weight', 1.0) == 0


#: the attention kind (``DecoderOutputs.attn``) each attention loss reads
ATTENTION_KINDS = dict(loss_self_attn='self', loss_cross_attn='cross')


def attention_kinds(loss_fns: nn.ModuleDict) -> FrozenSet[str]:
    """The attention kinds (``'self'``, ``'cross'``) the losses in ``loss_fns`` read."""
    return frozenset(kind for name, kind in ATTENTION_KINDS.items() if name in loss_fns)


def pair_losses_by_layer(
    loss_fns: nn.ModuleDict,
    solved: SolvedPairing,
    student: Tuple[DecoderOutputs, str],
    img_metas: List[dict],
) -> Dict[int, Dict[str, Tensor]]:
    """:func:`pair_losses` of every student layer, by layer.

    Args:
        loss_fns (nn.ModuleDict): Losses by name (see ``ALL_PAIR_LOSSES``).
        solved (SolvedPairing): The pairs of every layer and the teacher outputs they
            index (``task_modules/pairing.py``).
        student (tuple): Student outputs and the group the student indices refer to.
        img_metas (list[dict]): Image metas with ``img_shape``.
    """
    s_out, group = student
    return {
        s_l: pair_losses(loss_fns, pairs, (s_out, group, s_l), (solved.teacher, t_l), img_metas)
        for s_l, t_l, pairs in solved.layers
    }


def pair_losses(
    loss_fns: nn.ModuleDict,
    pairs: Pairs,
    student: Tuple[DecoderOutputs, str, int],
    teacher: Tuple[DecoderOutputs, int],
    img_metas: List[dict],
) -> Dict[str, Tensor]:
    """Every loss in ``loss_fns`` over the matched pairs of one layer.

    Args:
        loss_fns (nn.ModuleDict): Losses by name (see ``ALL_PAIR_LOSSES``).
        pairs (tuple[Tensor, Tensor]): Student and teacher query indices,
            (bs, K) each; pair k of image b is (s_idx[b, k], t_idx[b, k]).
        student (tuple): Student outputs, the group the student indices
            refer to, and the student layer.
        teacher (tuple): Teacher outputs and layer (always its own group).
        img_metas (list[dict]): Image metas with ``img_shape``.

    Returns:
        dict[str, Tensor]: Classes (soft-label BCE on logits vs. teacher
        probabilities), boxes (L1 on normalised cxcywh, GIoU on pixel xyxy,
        both averaged over pairs), self-attention among the matched queries
        (the default loss renormalises each side's block over its matched
        queries: a teacher with more queries than pairs spreads weight over
        queries the student does not have; ``AttentionMapDistillLoss``) and their
        cross-attention, both reordered by the match. Only the matched
        queries' rows of the maps are formed (``DecoderOutputs.self_attn_block``).
    """
    (s_out, group, s_l), (t_out, t_l) = student, teacher
    s_idx, t_idx = pairs
    s_cls, s_box = (gather_queries(x[s_l], s_idx) for x in s_out.group(group))  # (bs, K, .)
    t_cls, t_box = (gather_queries(x[t_l], t_idx) for x in t_out.group(OWN_GROUP))
    num_pairs = max(s_idx.numel(), 1)
    out = {}
    if 'loss_cls' in loss_fns:
        out['loss_cls'] = loss_fns['loss_cls'](s_cls.flatten(0, 1), t_cls.flatten(0, 1))
    if 'loss_bbox' in loss_fns:
        out['loss_bbox'] = loss_fns['loss_bbox'](
            s_box.flatten(0, 1).float(), t_box.flatten(0, 1).float(), avg_factor=num_pairs
        )
    if 'loss_iou' in loss_fns:
        scale = pixel_scale(s_box, img_metas)
        out['loss_iou'] = loss_fns['loss_iou'](
            (bbox_cxcywh_to_xyxy(s_box.float()) * scale).flatten(0, 1),
            (bbox_cxcywh_to_xyxy(t_box.float()) * scale).flatten(0, 1),
            avg_factor=num_pairs,
        )
    if 'loss_self_attn' in loss_fns:
        out['loss_self_attn'] = loss_fns['loss_self_attn'](
            s_out.self_attn_block(group, s_l, s_idx),  # (bs, K, K)
            t_out.self_attn_block(OWN_GROUP, t_l, t_idx),
        )
    if 'loss_cross_attn' in loss_fns:
        out['loss_cross_attn'] = loss_fns['loss_cross_attn'](
            s_out.cross_attn_rows(group, s_l, s_idx),  # (bs, K, keys)
            t_out.cross_attn_rows(OWN_GROUP, t_l, t_idx),
        )
    return out
