"""The pairing step: student queries paired with teacher queries, each distinct pairing once.

A component declares what it needs paired (:class:`PairingRequest`, from its ``pairings()``);
the distiller solves every distinct request once per step (:func:`solve_pairings`) and passes
each component the pairs of its own requests. Components asking for the same pairing
(DETRDistill's logits distillation and contrastive term) get the same solve::

    requests  --solve_pairings-->  {request: SolvedPairing(teacher, layers)}
      'hungarian': the group's predictions Hungarian-matched to the teacher's (MixMatcher)
      'index':     query i of the group with teacher query i (a group of the teacher's queries;
                   of the teacher query it is, where the group keeps some: QueryGroup.take)
"""

import dataclasses
import json
from typing import Dict, Iterable, List, Mapping, NamedTuple, Tuple

import torch
from mmdet.registry import TASK_UTILS
from mmdet.utils import ConfigType
from torch import Tensor

from ..common import OWN_GROUP, TEACHER_QUERY_GROUP, DecoderOutputs, clamp_to_image
from .mix_matcher import MixMatcher

Pairs = Tuple[Tensor, Tensor]  # student, teacher query indices, (bs, K) each
HUNGARIAN, INDEX = 'hungarian', 'index'


@dataclasses.dataclass(frozen=True)
class PairingRequest:
    """What a component needs paired, in every decoder layer; equal requests, one solve.

    Attributes:
        how (str): ``'hungarian'`` (the student group's predictions matched to the teacher's
            on the matcher's costs: D3ETR's adaptive matching) or ``'index'`` (query i of the
            group with teacher query i: D3ETR's fixed matching).
        student_group (str): The student query group the student indices refer to.
        matcher_key (str): The matcher config as canonical JSON: what makes two matchers
            find the same pairs.
        matcher (MixMatcher): The matcher built from that config (not compared: equal
            configs find equal pairs).
        clamp_teacher_boxes (bool): Match against (and distil to) the teacher's boxes cut
            to the image (:func:`clamp_to_image`), as DETRDistill's official code does.
    """

    how: str
    student_group: str
    matcher_key: str
    matcher: MixMatcher = dataclasses.field(compare=False, repr=False)
    clamp_teacher_boxes: bool = False


class LayerPairs(NamedTuple):
    """The pairs of one student layer and the teacher layer it is distilled from."""

    student_layer: int
    teacher_layer: int
    pairs: Pairs


@dataclasses.dataclass(frozen=True)
class SolvedPairing:
    """A request's pairs in every layer (``MixMatcher.layer_pairs``).

    Attributes:
        teacher (DecoderOutputs): The teacher outputs the teacher indices refer to and the
            targets to distil to: the teacher's, boxes cut to the image if requested.
        layers (tuple[LayerPairs]): One per student layer, in order.
    """

    teacher: DecoderOutputs
    layers: Tuple[LayerPairs, ...]


SolvedPairings = Mapping[PairingRequest, SolvedPairing]


def _matcher(matcher: ConfigType) -> Tuple[str, MixMatcher]:
    return json.dumps(matcher, sort_keys=True, default=repr), TASK_UTILS.build(matcher)


def hungarian_pairing(matcher: ConfigType, clamp_teacher_boxes: bool = False) -> PairingRequest:
    """The student's own queries Hungarian-matched to the teacher's predictions."""
    key, built = _matcher(matcher)
    return PairingRequest(HUNGARIAN, OWN_GROUP, key, built, clamp_teacher_boxes)


def index_pairing(matcher: ConfigType, student_group: str = TEACHER_QUERY_GROUP) -> PairingRequest:
    """Query i of ``student_group`` (the teacher's queries run by the student) with teacher
    query i."""
    key, built = _matcher(matcher)
    return PairingRequest(INDEX, student_group, key, built)


def solve_pairings(
    requests: Iterable[PairingRequest],
    student_out: DecoderOutputs,
    teacher_out: DecoderOutputs,
    img_metas: List[dict],
) -> Dict[PairingRequest, SolvedPairing]:
    """Each distinct request solved once; student layer l is paired with teacher layer t(l)
    of :meth:`MixMatcher.layer_pairs`."""
    layers = MixMatcher.layer_pairs(student_out.num_layers, teacher_out.num_layers)
    return {
        request: solve_pairing(request, student_out, teacher_out, layers, img_metas)
        for request in dict.fromkeys(requests)
    }


def solve_pairing(
    request: PairingRequest,
    student_out: DecoderOutputs,
    teacher_out: DecoderOutputs,
    layers: List[Tuple[int, int]],
    img_metas: List[dict],
) -> SolvedPairing:
    """One request's pairs in every (student, teacher) layer of ``layers``."""
    teacher = teacher_out
    if request.clamp_teacher_boxes:
        teacher = dataclasses.replace(teacher, bbox_preds=clamp_to_image(teacher.bbox_preds))
    t_cls, t_box = teacher.group(OWN_GROUP)  # (Lt, bs, Nt, .)
    if request.how == INDEX:
        pairs = [index_pairs(request, student_out, t_cls)] * len(layers)
    else:  # all layers in one call: one copy of their costs to the host, concurrent solves
        s_layers, t_layers = (list(ls) for ls in zip(*layers))
        s_cls, s_box = student_out.group(request.student_group)  # (Ls, bs, Ns, .)
        s_idx, t_idx = request.matcher.adaptive_match_layers(
            s_cls[s_layers], s_box[s_layers], t_cls[t_layers], t_box[t_layers], img_metas
        )
        pairs = list(zip(s_idx, t_idx))
    return SolvedPairing(teacher, tuple(LayerPairs(s, t, p) for (s, t), p in zip(layers, pairs)))


def index_pairs(request: PairingRequest, student_out: DecoderOutputs, teacher_cls: Tensor) -> Pairs:
    """Query k of the request's group with the teacher query it is: teacher query k, or
    ``teacher_index[b, k]`` where the group keeps some of the teacher's queries
    (:meth:`QueryGroup.take`). ``teacher_cls``: the teacher's logits, (Lt, bs, Nt, C)."""
    group = student_out.groups.get(request.student_group)
    if group is None or group.teacher_index is None:
        bs, num_t = teacher_cls.shape[1:3]
        return request.matcher.fixed_match(bs, num_t, teacher_cls.device)
    t_idx = group.teacher_index
    return torch.arange(t_idx.shape[1], device=t_idx.device).expand_as(t_idx), t_idx
