"""OD-DETR's query twins: student query i and teacher query i are one query, decoded by each.

Both of OD-DETR's assignments (matching distillation, and its blended-cost variant) compare
query i of the student with query i of its EMA teacher. With learned queries (Conditional,
DAB, one-stage Deformable DETR) the two are the same query, since the teacher is the student's
EMA. A two-stage student's (two-stage Deformable DETR, DINO) query i is its own i-th encoder
proposal: its twin is the teacher's output for *that* proposal, which
:meth:`ODDETRDistiller.teacher_on_queries` computes (``teacher_on_student_queries``).
"""

from typing import Optional

from torch import nn

from ..common import DecoderOutputs
from .config_keys import ComponentKeys


def check_same_num_queries(keys: ComponentKeys, student: nn.Module, teacher: nn.Module) -> None:
    """Refuse a teacher with another number of queries than the student.

    Raises:
        ValueError: Naming both numbers and the component's switch.
    """
    if student.num_queries != teacher.num_queries:
        raise ValueError(
            f'{keys.config}: teacher-guided assignment pairs student query i with teacher '
            f'query i, but the student has {student.num_queries} queries and the teacher '
            f'{teacher.num_queries}; give both the same num_queries or switch it off '
            f'({keys.switch_off})'
        )


def queries_are_proposals(student: nn.Module) -> bool:
    """Whether the student's queries are its own per-image encoder proposals (two-stage)."""
    return bool(getattr(student, 'as_two_stage', False))


def teacher_twins(
    keys: ComponentKeys,
    proposals: bool,
    teacher_out: Optional[DecoderOutputs],
    teacher_on_student_queries: Optional[DecoderOutputs],
) -> DecoderOutputs:
    """The teacher's outputs for the student's own queries, query i for query i.

    Args:
        keys (ComponentKeys): The component's config keys, for the error.
        proposals (bool): The student's queries are its encoder proposals.
        teacher_out (DecoderOutputs, optional): The teacher's outputs for its own queries.
        teacher_on_student_queries (DecoderOutputs, optional): The teacher's outputs for
            the student's queries (two-stage).

    Raises:
        ValueError: A two-stage student without ``teacher_on_student_queries``.
    """
    if not proposals:
        return teacher_out
    if teacher_on_student_queries is None:
        raise ValueError(
            f"{keys.config}: a two-stage student's query i is its own i-th encoder proposal, "
            "and this distiller's teacher decodes its own proposals, so the guidance would mix "
            "unrelated queries. Use type='ODDETRDistiller' (its teacher decodes the student's "
            'proposals), a student with as_two_stage=False, or switch it off '
            f'({keys.switch_off}).'
        )
    return teacher_on_student_queries
