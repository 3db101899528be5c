"""D3ETR (arXiv 2211.09768), Sec. 3, MixMatcher's Fixed Matching.

Distil through the teacher's own queries run in the student's decoder (index pairs).
"""

import dataclasses
from typing import Dict, FrozenSet, List, Optional, Tuple

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType
from torch import Tensor, nn

from ..common import TEACHER_QUERY_GROUP, DecoderOutputs, QueryGroup
from ..task_modules.pairing import PairingRequest, SolvedPairings, index_pairing
from .base_component import DistillComponent
from .pair_losses import ALL_PAIR_LOSSES, attention_kinds, build_pair_losses, pair_losses_by_layer


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
class FixedMatchKD(DistillComponent):
    """D3ETR's fixed matching.

    The teacher's queries (as they entered its decoder; what the student's
    family derives from them before the decoder is derived by the student's
    layers, :func:`teacher_query_group`) run through the student's decoder
    as the isolated group ``'teacher_queries'``; in every student layer l,
    query i of the group is paired with teacher query i of layer t(l) (the
    pairing step, :func:`index_pairing`), and the pairs are distilled
    (:func:`pair_losses`): class, L1, GIoU, self- and cross-attention. Keys
    ``{prefix}.d{l}.{loss}``.

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'d3etr.fixed'``.
        matcher (dict): Matcher config, for ``layer_pairs``/``fixed_match``.
            Defaults to ``MixMatcher``.
        losses (dict, optional): Pair losses merged over ``default_losses``;
            ``None`` switches one off. Defaults to None.
    """

    default_losses = ALL_PAIR_LOSSES

    def __init__(
        self,
        prefix: str = 'd3etr.fixed',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=False, fixed=True),
        losses: Optional[dict] = None,
    ) -> None:
        super().__init__(prefix)
        self.pairing = index_pairing(matcher, TEACHER_QUERY_GROUP)
        self.matcher = self.pairing.matcher
        # a distiller prefixes build errors with the component's config key
        self.losses = build_pair_losses(losses, self.default_losses, 'losses')

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        check_same_query_format(student, teacher, self)
        super().bind(student, teacher)

    def attention_kinds(self) -> FrozenSet[str]:
        return attention_kinds(self.losses)

    def all_losses_off(self) -> bool:
        return not self.losses

    def query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        return [] if self.all_losses_off() else [teacher_query_group(teacher_out, self.student)]

    def pairings(self) -> Tuple[PairingRequest, ...]:
        """Query i of the teacher-query group with teacher query i, every layer."""
        return () if self.all_losses_off() else (self.pairing,)

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings,
    ) -> Dict[str, Tensor]:
        """Pair losses of every student layer, keys ``{prefix}.d{l}.{loss}``."""
        if self.all_losses_off():
            return {}
        img_metas = [s.metainfo for s in batch_data_samples]
        student = (student_out, TEACHER_QUERY_GROUP)
        return self.keyed(
            pair_losses_by_layer(self.losses, pairs[self.pairing], student, img_metas)
        )
