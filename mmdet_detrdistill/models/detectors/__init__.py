"""Detectors whose decoders run extra query groups, and the mapping to them."""

import copy
from typing import Dict

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


def to_group_detector_cfg(cfg: dict, role: str) -> ConfigDict:
    """A copy of an mmdet detector config whose type supports query groups.

    Args:
        cfg (dict): An mmdet model config, e.g. ``type='ConditionalDETR'``.
        role (str): ``'student'`` or ``'teacher'``, for error messages.

    Returns:
        ConfigDict: A deep copy (mmdet detectors write into their configs)
        with ``type`` replaced by its group subclass.
    """
    cfg = ConfigDict(copy.deepcopy(cfg))
    det_type = cfg.get('type')
    det_type = getattr(det_type, '__name__', det_type)
    if det_type in GROUP_DETECTORS.values():
        return cfg
    if det_type not in GROUP_DETECTORS:
        raise ValueError(
            f'model.{role}.type: detector type {det_type!r} is not supported; supported types are '
            f'{sorted(GROUP_DETECTORS)}. Use one of these families for the {role} model.'
        )
    cfg.type = GROUP_DETECTORS[det_type]
    return cfg


__all__ = [
    'GROUP_DETECTORS',
    'GroupConditionalDETR',
    'GroupDABDETR',
    'GroupDeformableDETR',
    'GroupDINO',
    'OWN_GROUP',
    'QueryGroupMixin',
    'to_group_detector_cfg',
]
