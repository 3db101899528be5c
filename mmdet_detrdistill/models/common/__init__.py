"""Shared types and helpers of the models: one home, imported by every other part.

This package imports only torch, mmdet, mmengine and the standard library,
never another module of ``mmdet_detrdistill``, so anything may import it
without an import cycle (``tests/models/test_import_graph.py`` checks it).

* :mod:`.query_group`: :class:`QueryGroup` and the group names.
* :mod:`.decoder_outputs`: :class:`DecoderOutputs`, a decoder's output per group.
* :mod:`.gather`: pick queries by index (:func:`gather_queries`, :func:`gather_square`).
* :mod:`.boxes`: :func:`pixel_scale`, image sizes as box scales; :func:`clamp_to_image`;
  :func:`pred_instances`, predictions in the layout assigners take.
* :mod:`.precision`: :func:`autocast_off`.
* :mod:`.costs`: :func:`clamp_finite`, :func:`soft_label_bce_cost`.
"""

from .boxes import clamp_to_image, pixel_scale, pred_instances
from .costs import FINITE_COST_LIMIT, clamp_finite, soft_label_bce_cost
from .decoder_outputs import DecoderOutputs
from .gather import gather_queries, gather_square
from .precision import autocast_off
from .query_group import OWN_GROUP, STUDENT_QUERY_GROUP, TEACHER_QUERY_GROUP, QueryGroup

__all__ = [
    'DecoderOutputs',
    'FINITE_COST_LIMIT',
    'OWN_GROUP',
    'QueryGroup',
    'STUDENT_QUERY_GROUP',
    'TEACHER_QUERY_GROUP',
    'autocast_off',
    'clamp_finite',
    'clamp_to_image',
    'gather_queries',
    'gather_square',
    'pixel_scale',
    'pred_instances',
    'soft_label_bce_cost',
]
