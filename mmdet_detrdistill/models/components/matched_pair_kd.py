"""D3ETR (arXiv 2211.09768), Sec. 3: what MixMatcher's two matchings share.

Pairs of student and teacher queries per decoder layer, distilled.
"""

import json
from typing import Dict, List, Optional, Tuple

from mmdet.registry import TASK_UTILS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType
from torch import Tensor

from ..common import DecoderOutputs
from .base_component import DistillComponent
from .pair_losses import ALL_PAIR_LOSSES, build_pair_losses, pair_losses, uses_attention

Pairs = Tuple[Tensor, Tensor]  # student, teacher query indices, (bs, K) each


class MatchedPairKD(DistillComponent):
    """Base of the components that pair student queries with teacher queries
    in every decoder layer and distil each pair (:func:`pair_losses`).

    Subclasses say which student group the pairs live in
    (:attr:`student_group`) and how the pairs of every layer are found
    (:meth:`match_layers`, one call for all layers so that a matcher can
    batch them).

    Student layer l is paired with teacher layer t(l) by the matcher's
    ``layer_pairs``; losses are keyed ``{prefix}.d{l}.{loss}``. Components
    that find their pairs the same way (same :meth:`match_layers`, student
    group and matcher config), as DETRDistill's logits and contrastive terms,
    share one matching per step (:meth:`paired_layers`).

    Args:
        prefix (str): Loss-key prefix.
        matcher (dict): Matcher config (a ``MixMatcher``).
        losses (dict, optional): Pair losses merged over ``default_losses``;
            ``None`` switches one off. Keys: loss_cls, loss_bbox, loss_iou,
            loss_self_attn, loss_cross_attn. Defaults to None.
    """

    default_losses = ALL_PAIR_LOSSES
    #: the student query group the pairs' student indices refer to
    student_group: str

    def __init__(self, prefix: str, matcher: ConfigType, losses: Optional[dict] = None) -> None:
        super().__init__(prefix)
        self.matcher = TASK_UTILS.build(matcher)
        # equal keys find equal pairs in a step: match_layers, the group it reads, the matcher
        self.matching_key = (
            type(self).match_layers,
            self.student_group,
            json.dumps(matcher, sort_keys=True, default=repr),
        )
        # a distiller prefixes build errors with the component's config key
        self.losses = build_pair_losses(losses, self.default_losses, 'losses')

    def records_attention(self) -> bool:
        return uses_attention(self.losses)

    def match_layers(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        layers: List[Tuple[int, int]],
        img_metas: List[dict],
    ) -> List[Pairs]:
        """The (student, teacher) query pairs of each (student, teacher) layer of ``layers``."""
        raise NotImplementedError

    def teacher_targets(self, teacher_out: DecoderOutputs) -> DecoderOutputs:
        """The teacher outputs the pairs are matched against and distilled to.

        Default: the teacher's outputs as they are.
        """
        return teacher_out

    def paired_layers(
        self, student_out: DecoderOutputs, teacher_out: DecoderOutputs, img_metas: List[dict]
    ) -> List[Tuple[Tuple[int, int], Pairs]]:
        """Each (student, teacher) layer pair of :meth:`MixMatcher.layer_pairs` with its query
        pairs.

        The pairs are kept in ``student_out.matchings`` for this step: a
        component with the same :attr:`matching_key` reuses them instead of
        solving the same assignments again (at DINO's 900 queries, 12 solves of
        900 x 900 per step and component).
        """
        layers = self.matcher.layer_pairs(student_out.num_layers, teacher_out.num_layers)
        key = (self.matching_key, tuple(layers))
        found = student_out.matchings.get(key)
        if found is None or found[0] is not teacher_out:
            found = (teacher_out, self.match_layers(student_out, teacher_out, layers, img_metas))
            student_out.matchings[key] = found
        return list(zip(layers, found[1]))

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
    ) -> Dict[str, Tensor]:
        """Pair losses of every student layer, keys ``{prefix}.d{l}.{loss}``."""
        img_metas = [s.metainfo for s in batch_data_samples]
        targets = self.teacher_targets(teacher_out)
        out = {}
        for (s_l, t_l), pairs in self.paired_layers(student_out, teacher_out, img_metas):
            layer = pair_losses(
                self.losses,
                pairs,
                (student_out, self.student_group, s_l),
                (targets, t_l),
                img_metas,
            )
            out.update({f'{self.prefix}.d{s_l}.{k}': v for k, v in layer.items()})
        return out
