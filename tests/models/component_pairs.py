"""A component's loss with its pairs solved as the distiller solves them (not a test module)."""

from typing import Dict, List

from torch import Tensor, nn

from mmdet_detrdistill.models.common import DecoderOutputs
from mmdet_detrdistill.models.task_modules.pairing import solve_pairings


def loss_with_pairs(
    component: nn.Module, student_out: DecoderOutputs, teacher_out: DecoderOutputs, samples: List
) -> Dict[str, Tensor]:
    """``component.loss`` given the solved pairs of its ``pairings()`` (one step's pairing)."""
    metas = [s.metainfo for s in samples]
    pairs = solve_pairings(component.pairings(), student_out, teacher_out, metas)
    return component.loss(student_out, teacher_out, samples, pairs)
