"""Detectors whose decoders run extra query groups, and the mapping to them and their heads."""

import copy
from typing import Any, Dict

from mmengine.config import ConfigDict

from ..common import OWN_GROUP
from .group_conditional_detr import GroupConditionalDETR
from .group_dab_detr import GroupDABDETR
from .group_deformable_detr import GroupDeformableDETR
from .group_dino import GroupDINO
from .query_group_mixin import QueryGroupMixin

# mmdet detector type -> our subclass with query groups (same parameters).
GROUP_DETECTORS: Dict[str, str] = {
    'ConditionalDETR': 'GroupConditionalDETR',
    'DABDETR': 'GroupDABDETR',
    'DeformableDETR': 'GroupDeformableDETR',
    'DINO': 'GroupDINO',
}
# mmdet head type -> our subclass whose losses take the assigners (same parameters).
GROUP_HEADS: Dict[str, str] = {
    'ConditionalDETRHead': 'GroupConditionalDETRHead',
    'DABDETRHead': 'GroupDABDETRHead',
    'DeformableDETRHead': 'GroupDeformableDETRHead',
    'DINOHead': 'GroupDINOHead',
}


def to_group_detector_cfg(cfg: dict, role: str) -> ConfigDict:
    """A copy of an mmdet detector config whose types support query groups and assigners.

    Args:
        cfg (dict): An mmdet model config, e.g. ``type='ConditionalDETR'``
            with ``bbox_head=dict(type='ConditionalDETRHead', ...)``.
        role (str): ``'student'`` or ``'teacher'``, for error messages.

    Returns:
        ConfigDict: A deep copy (mmdet detectors write into their configs)
        with ``type`` replaced by its group subclass (:data:`GROUP_DETECTORS`)
        and ``bbox_head.type`` by its subclass whose losses take assigners
        (:data:`GROUP_HEADS`).
    """
    cfg = ConfigDict(copy.deepcopy(cfg))
    cfg.type = _group_type(cfg.get('type'), GROUP_DETECTORS, role, 'type', 'detector')
    head = cfg.get('bbox_head')
    if isinstance(head, dict):
        head.type = _group_type(head.get('type'), GROUP_HEADS, role, 'bbox_head.type', 'head')
    return cfg


def _group_type(given: Any, mapping: Dict[str, str], role: str, key: str, kind: str) -> str:
    """Our subclass of the mmdet type ``given`` (a name or a class); ``given`` if it is ours."""
    name = getattr(given, '__name__', given)
    if name in mapping.values():
        return name
    if name not in mapping:
        raise ValueError(
            f'model.{role}.{key}: {kind} type {name!r} is not supported; supported types are '
            f'{sorted(mapping)}. Use one of these families for the {role} model.'
        )
    return mapping[name]


__all__ = [
    'GROUP_DETECTORS',
    'GROUP_HEADS',
    'GroupConditionalDETR',
    'GroupDABDETR',
    'GroupDeformableDETR',
    'GroupDINO',
    'OWN_GROUP',
    'QueryGroupMixin',
    'to_group_detector_cfg',
]
