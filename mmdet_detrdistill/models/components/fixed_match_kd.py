"""D3ETR (arXiv 2211.09768), Sec. 3, MixMatcher's Fixed Matching.

Distil through the teacher's own queries run in the student's decoder (index pairs).
"""

import dataclasses
from typing import List, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType
from torch import nn

from ..common import OWN_GROUP, TEACHER_QUERY_GROUP, DecoderOutputs, QueryGroup
from .matched_pair_kd import MatchedPairKD, Pairs


def check_same_query_format(student: nn.Module, teacher: nn.Module, component: nn.Module) -> None:
    """Raise unless the teacher's query groups fit the student's decoder; the error names
    the setting that switches ``component`` off for the distiller in use (its ``config_keys``)."""
    teacher_fmt, student_fmt = teacher.query_format(), student.query_format()
    if teacher_fmt != student_fmt:
        raise ValueError(
            f"{type(component).__name__} ({component.config_keys.config}) feeds the teacher's "
            'queries to the student decoder, which needs the same query format: teacher '
            f'{type(teacher).__name__} {teacher_fmt}, student {type(student).__name__} '
            f'{student_fmt} (family, embed_dims, ...). Switch it off '
            f'({component.config_keys.switch_off}) to distil without it.'
        )


def teacher_query_group(teacher_out: DecoderOutputs, student: nn.Module) -> QueryGroup:
    """The teacher's queries as they entered its decoder, made a group the student's way.

    The group keeps the teacher's query parameters (content and positional
    queries, anchors, proposals); what the student's family derives from
    them before the decoder is derived by the *student's* layers
    (:meth:`QueryGroupMixin.adopt_query_group`: one-stage Deformable DETR's
    reference points), so those layers learn from the group.
    """
    group = dataclasses.replace(teacher_out.own_queries, name=TEACHER_QUERY_GROUP)
    return student.adopt_query_group(group)


@MODELS.register_module()
class FixedMatchKD(MatchedPairKD):
    """D3ETR's fixed matching (and OD-DETR's initial-query constraint).

    The teacher's queries (as they entered its decoder; what the student's
    family derives from them before the decoder is derived by the student's
    layers, :func:`teacher_query_group`) run through the student's decoder
    as the isolated group ``'teacher_queries'``; in every student layer l,
    query i of the group is paired with teacher query i of layer t(l), and
    the pairs are distilled (see :class:`MatchedPairKD`).

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'d3etr.fixed'``.
        matcher (dict): Matcher config, for ``layer_pairs``/``fixed_match``.
            Defaults to ``MixMatcher``.
        losses (dict, optional): Pair losses merged over ``default_losses``;
            ``None`` switches one off. Defaults to None.
    """

    student_group = TEACHER_QUERY_GROUP

    def __init__(
        self,
        prefix: str = 'd3etr.fixed',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=False, fixed=True),
        losses: Optional[dict] = None,
    ) -> None:
        super().__init__(prefix, matcher, losses)

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        check_same_query_format(student, teacher, self)
        super().bind(student, teacher)

    def query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        return [teacher_query_group(teacher_out, self.student)]

    def match_layers(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        layers: List[Tuple[int, int]],
        img_metas: List[dict],
    ) -> List[Pairs]:
        """Query i of the group with teacher query i, in every layer."""
        t_cls = teacher_out.group(OWN_GROUP)[0]
        bs, num_t = t_cls.shape[1:3]
        return [self.matcher.fixed_match(bs, num_t, t_cls.device)] * len(layers)
