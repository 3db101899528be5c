"""Build a distiller's components and gather the query groups they ask for."""

from typing import Dict, Iterable, List

from mmdet.registry import MODELS
from mmdet.utils import OptConfigType
from torch import nn

from ..layers import QueryGroup


def build_components(
    cfgs: Dict[str, OptConfigType], student: nn.Module, teacher: nn.Module
) -> nn.ModuleDict:
    """Build the components (``None`` entries are off) and bind them to the models.

    The dict key is the default loss-key prefix of a component whose config
    gives none.
    """
    components = nn.ModuleDict()
    for name, cfg in cfgs.items():
        if cfg is None:
            continue
        if isinstance(cfg, nn.Module):
            component = cfg
        else:
            if not isinstance(cfg, dict) or 'type' not in cfg:
                raise TypeError(
                    f'model.components.{name} must be a config dict with a `type` '
                    f'(or None to switch it off), got {cfg!r}'
                )
            cfg = dict(cfg)
            cfg.setdefault('prefix', name)
            component = MODELS.build(cfg)
        component.bind(student, teacher)
        components[name] = component
    return components


def merge_query_groups(requests: Iterable[List[QueryGroup]]) -> List[QueryGroup]:
    """One list of groups; components asking for the same group share it.

    Two requests with the same name must be the very same queries (e.g.
    D3ETR's fixed matching and DETRDistill's query prior both use the
    teacher's queries): the group then runs once.
    """
    merged: Dict[str, QueryGroup] = {}
    for groups in requests:
        for group in groups:
            seen = merged.get(group.name)
            if seen is None:
                merged[group.name] = group
            elif seen.query is not group.query:
                raise ValueError(f'two components add different query groups named {group.name!r}')
    return list(merged.values())
