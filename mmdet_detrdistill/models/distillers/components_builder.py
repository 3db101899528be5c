"""Build a distiller's components and gather the query groups they ask for."""

from typing import Dict, Iterable, List, Mapping, Optional

import torch
from mmdet.registry import MODELS
from mmdet.utils import OptConfigType
from torch import Tensor, nn

from ..common import QueryGroup
from ..components.config_keys import ComponentKeys
from .loss_weights import check_loss_weights


def build_components(
    cfgs: Dict[str, OptConfigType],
    student: nn.Module,
    teacher: nn.Module,
    keys: Optional[Mapping[str, ComponentKeys]] = None,
) -> nn.ModuleDict:
    """Build the components (``None`` entries are off) and bind them to the models.

    The dict key is the default loss-key prefix of a component whose config
    gives none. ``keys`` says where the user configures each component (a
    method preset's own arguments); entries it does not name are
    ``model.components.<name>``. Every error raised while building a component
    names that key, and the component keeps them (``config_keys``) for the
    errors of :meth:`~DistillComponent.bind` and later.
    """
    components = nn.ModuleDict()
    for name, cfg in cfgs.items():
        if cfg is None:
            continue
        where = (keys or {}).get(name) or ComponentKeys.of_entry(name)
        if isinstance(cfg, nn.Module):
            component = cfg
        else:
            if not isinstance(cfg, dict) or 'type' not in cfg:
                raise TypeError(
                    f'{where.config} must be a config dict with a `type` '
                    f'(or None to switch it off), got {cfg!r}'
                )
            cfg = dict(cfg)
            cfg.setdefault('prefix', name)
            try:
                component = MODELS.build(cfg)
            except (KeyError, ValueError, TypeError) as err:
                if type(err) not in (KeyError, ValueError, TypeError):
                    raise  # a subclass may not take a message alone
                message = err.args[0] if len(err.args) == 1 else str(err)
                raise type(err)(f'{where.config}: {message}') from err
        component.config_keys = where
        check_loss_weights(component, where)
        component.bind(student, teacher)
        components[name] = component
    return components


def unique_query_groups(requests: Iterable[List[QueryGroup]]) -> List[QueryGroup]:
    """The groups the components ask for, each once; components asking for the same group share it.

    (Not the detectors' ``merge_query_groups``, which concatenates groups into
    decoder inputs.)

    Two requests with the same name must be the very same queries (e.g.
    D3ETR's fixed matching and DETRDistill's query prior both use the
    teacher's queries): the group then runs once.
    """
    unique: Dict[str, QueryGroup] = {}
    for groups in requests:
        for group in groups:
            seen = unique.get(group.name)
            if seen is None:
                unique[group.name] = group
            elif seen.query is not group.query or not _same(seen.reference, group.reference):
                raise ValueError(
                    f'two components add different query groups named {group.name!r} (e.g. '
                    'different `reference_points` settings): give them the same settings'
                )
    return list(unique.values())


def _same(a: Optional[Tensor], b: Optional[Tensor]) -> bool:
    """Whether two reference tensors (or Nones) hold the same values."""
    if a is b:
        return True
    return a is not None and b is not None and a.shape == b.shape and bool(torch.equal(a, b))
