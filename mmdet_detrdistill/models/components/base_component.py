"""What a distillation component is: one piece of knowledge transfer, one config entry."""

from types import MappingProxyType
from typing import Dict, FrozenSet, List, Optional, Tuple

from mmdet.models.task_modules import BaseAssigner
from mmdet.structures import SampleList
from torch import Tensor, nn

from ..common import DecoderOutputs, QueryGroup
from ..dense_heads import DecoderLoss
from ..task_modules.pairing import PairingRequest, SolvedPairings
from .config_keys import UNNAMED, ComponentKeys

NO_PAIRS: SolvedPairings = MappingProxyType({})


class DistillComponent(nn.Module):
    """Base class of the components a distiller is composed of.

    A distiller runs the teacher (no grad), asks every component for the
    extra query groups it wants in the student's decoder, runs the student
    with all of them, solves the query pairs the components ask for
    (:meth:`pairings`, each distinct one once: ``task_modules/pairing.py``),
    and adds up the students' ground-truth losses and every component's
    :meth:`loss`, given its pairs. Components are independent config entries, so
    methods mix (e.g. D3ETR's adaptive matching with DETRDistill's feature
    distillation) and each one can be switched off for an ablation.

    The student and teacher are given by :meth:`bind`, held outside the
    module tree (a component's ``state_dict`` holds only its own parameters,
    such as a feature projection).

    Args:
        prefix (str): Loss-key prefix, e.g. ``'d3etr.adaptive'``; keys read
            ``{prefix}.d{layer}.{loss name}``.
    """

    #: whether :meth:`gt_assigners` or :meth:`gt_decoder_loss` changes the student's GT
    #: assignment
    overrides_gt_assignment = False
    #: the user's config keys of this component, for error messages; set by the distiller
    #: before :meth:`bind` (see :func:`build_components`)
    config_keys: ComponentKeys = UNNAMED

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        """Check that the component works with these models (raise a
        ``ValueError`` saying what to change if not) and keep them."""
        object.__setattr__(self, 'student', student)
        object.__setattr__(self, 'teacher', teacher)

    def attention_kinds(self) -> FrozenSet[str]:
        """The decoder attention maps the component's :meth:`loss` reads (``'self'``,
        ``'cross'``): the distiller records only these. None by default."""
        return frozenset()

    def all_losses_off(self) -> bool:
        """Whether every loss of the component is off (``None`` or a zero weight): it then
        adds no query group, asks no pairs and returns no loss. False by default."""
        return False

    def query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        """Extra query groups to run in the student's decoder."""
        return []

    def gt_assigners(
        self,
        teacher_out: Optional[DecoderOutputs],
        img_metas: List[dict],
        teacher_on_student_queries: Optional[DecoderOutputs] = None,
    ) -> Optional[List[BaseAssigner]]:
        """The assigner of each image for the student's own ground-truth losses
        (every decoder layer, not two-stage encoder proposals), or None to keep
        the head's.

        Args:
            teacher_out (DecoderOutputs, optional): The teacher's outputs.
            img_metas (list[dict]): Image metas.
            teacher_on_student_queries (DecoderOutputs, optional): The teacher's
                outputs for the student's own queries, given where those are not
                the teacher's own (OD-DETR on a two-stage student). Defaults to None.
        """
        return None

    def gt_decoder_loss(
        self,
        teacher_out: Optional[DecoderOutputs],
        img_metas: List[dict],
        teacher_on_student_queries: Optional[DecoderOutputs] = None,
    ) -> Optional[DecoderLoss]:
        """The student's own ground-truth losses of every decoder layer, computed by the
        component instead of the head's steps (OD-DETR's matching distillation, where a
        query learns from several GT boxes), or None to keep the head's.

        The head gives it the decoder queries mmdet's losses see (DINO: the matching
        queries, not the denoising ones) and the student's assigner of each layer and
        image (:data:`DecoderLoss`); two-stage encoder proposals keep the head's loss.
        Arguments as :meth:`gt_assigners`.
        """
        return None

    def pairings(self) -> Tuple[PairingRequest, ...]:
        """The query pairs the component's :meth:`loss` needs (none by default; none
        either when all its losses are off: no solve is made for a loss no one reads)."""
        return ()

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings = NO_PAIRS,
    ) -> Dict[str, Tensor]:
        """The component's losses, keyed by :meth:`keyed`.

        Args:
            student_out (DecoderOutputs): The student's outputs, every query group.
            teacher_out (DecoderOutputs): The teacher's outputs.
            batch_data_samples (list[DetDataSample]): The batch's samples.
            pairs (Mapping[PairingRequest, SolvedPairing]): The solved pairs of each of
                :meth:`pairings`; given to components that declare some.
        """
        raise NotImplementedError

    def keyed(self, by_layer: Dict[int, Dict[str, Tensor]]) -> Dict[str, Tensor]:
        """Losses by layer and name as the component's loss keys, ``{prefix}.d{layer}.{name}``.

        Args:
            by_layer (dict[int, dict[str, Tensor]]): Each layer's losses by name.
        """
        return {
            f'{self.prefix}.d{layer}.{name}': value
            for layer, losses in by_layer.items()
            for name, value in losses.items()
        }

    def extra_repr(self) -> str:
        return f'prefix={self.prefix!r}'
