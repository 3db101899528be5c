"""What a distillation component is: one piece of knowledge transfer, one config entry."""

from typing import Dict, List, Optional

from mmdet.models.task_modules import BaseAssigner
from mmdet.structures import SampleList
from torch import Tensor, nn

from ..common import DecoderOutputs, QueryGroup
from .config_keys import UNNAMED, ComponentKeys


class DistillComponent(nn.Module):
    """Base class of the components a distiller is composed of.

    A distiller runs the teacher (no grad), asks every component for the
    extra query groups it wants in the student's decoder, runs the student
    with all of them, and adds up the students' ground-truth losses and every
    component's :meth:`loss`. Components are independent config entries, so
    methods mix (e.g. D3ETR's adaptive matching with DETRDistill's feature
    distillation) and each one can be switched off for an ablation.

    The student and teacher are given by :meth:`bind`, held outside the
    module tree (a component's ``state_dict`` holds only its own parameters,
    such as a feature projection).

    Args:
        prefix (str): Loss-key prefix, e.g. ``'d3etr.adaptive'``; keys read
            ``{prefix}.d{layer}.{loss name}``.
    """

    #: whether :meth:`gt_assigners` changes the student's GT assignment
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

    def records_attention(self) -> bool:
        """Whether the component needs decoder attention maps."""
        return False

    def query_groups(
        self, teacher_out: DecoderOutputs, batch_data_samples: SampleList
    ) -> List[QueryGroup]:
        """Extra query groups to run in the student's decoder."""
        return []

    def gt_assigners(
        self, teacher_out: Optional[DecoderOutputs], img_metas: List[dict]
    ) -> Optional[List[BaseAssigner]]:
        """The assigner of each image for the student's own ground-truth losses
        (every decoder layer, not two-stage encoder proposals), or None to keep
        the head's."""
        return None

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
    ) -> Dict[str, Tensor]:
        """The component's losses, keys starting with ``prefix``."""
        raise NotImplementedError

    def extra_repr(self) -> str:
        return f'prefix={self.prefix!r}'
