"""Rewrite a config so that plain MMDetection runs it without this package.

Every ``type`` (and ``optim_wrapper.constructor``) that this package registers is found in
mmdet's registries (a class whose ``__module__`` starts with ``mmdet_detrdistill``) and
replaced by its nearest registered MMEngine/MMDetection base class: ``GroupConditionalDETR``
-> ``ConditionalDETR``, ``StudentOptimWrapperConstructor`` ->
``DefaultOptimWrapperConstructor``, a checkpoint hook subclass -> ``CheckpointHook``. Arguments
the base does not take are dropped. A hook of ours without such a base (e.g.
``DropExecutableConfigHook``) is dropped from its list; any other type of ours without one is
an error, never a config that fails later in plain mmdet.
"""

import inspect
from typing import Any, Dict, List, Optional, Set, Tuple

PACKAGE = 'mmdet_detrdistill'
_Path = str


def _ours(cls: type) -> bool:
    return cls.__module__.split('.', 1)[0] == PACKAGE


def own_registered_types() -> Dict[str, Tuple[type, Any]]:
    """``{name: (class, registry)}`` of every class this package registers in mmdet's registries."""
    import mmdet.registry
    from mmengine.registry import Registry

    import mmdet_detrdistill  # noqa: F401  (registers the classes)

    found = {}
    for registry in vars(mmdet.registry).values():
        if isinstance(registry, Registry):
            for name, cls in registry.module_dict.items():
                if isinstance(cls, type) and _ours(cls):
                    found[name] = (cls, registry)
    return found


def plain_base(cls: type, registry: Any) -> Optional[str]:
    """Name of ``cls``'s nearest base class registered in ``registry`` (or its parents) by a
    package other than this one; None if there is none."""
    for base in cls.__mro__[1:]:
        if not _ours(base) and registry.get(base.__name__) is base:
            return base.__name__
    return None


def _named_args(cls: type) -> Tuple[Set[str], bool]:
    """The named arguments of ``cls.__init__``, and whether it also takes ``**kwargs``."""
    params = inspect.signature(cls.__init__).parameters.values()
    named = {p.name for p in params if p.kind not in (p.VAR_KEYWORD, p.VAR_POSITIONAL)}
    return named, any(p.kind is p.VAR_KEYWORD for p in params)


def _base_args(cfg: dict, cls: type, base: type) -> dict:
    """``cfg`` without the arguments of ``cls`` that ``base`` does not take."""
    own, _ = _named_args(cls)
    named, takes_any = _named_args(base)
    drop = own - named if takes_any else set(cfg) - named
    return {k: v for k, v in cfg.items() if k not in drop or k in ('type', '_scope_')}


def _plain_dict(cfg: dict, path: _Path, own: dict, dropped: List[str]) -> Optional[dict]:
    """``cfg`` rewritten; None if it is a hook of ours to drop."""
    from mmengine.hooks import Hook

    cfg = {key: _plain(value, f'{path}.{key}', own, dropped) for key, value in cfg.items()}
    for key in ('type', 'constructor'):
        name = cfg.get(key)
        if not isinstance(name, str) or name not in own:
            continue
        cls, registry = own[name]
        base = plain_base(cls, registry)
        if base is None and key == 'type' and issubclass(cls, Hook):
            dropped.append(f'{path} ({name})')
            return None
        if base is None:
            raise ValueError(
                f'{path}.{key}={name!r} is a type of {PACKAGE} with no MMDetection/MMEngine '
                'base class: the exported config cannot run without this package. Remove it '
                'from the training config (or export without a config).'
            )
        cfg[key] = base
        if key == 'type':
            cfg = _base_args(cfg, cls, registry.get(base))
    return cfg


def _plain(value: Any, path: _Path, own: dict, dropped: List[str]) -> Any:
    if isinstance(value, dict):
        return _plain_dict(value, path, own, dropped)
    if isinstance(value, (list, tuple)):
        items = [_plain(v, f'{path}[{i}]', own, dropped) for i, v in enumerate(value)]
        items = [v for v, old in zip(items, value) if not (v is None and old is not None)]
        return tuple(items) if isinstance(value, tuple) else items
    return value


def _without_own_imports(custom_imports: Any) -> Optional[dict]:
    """``custom_imports`` without this package's modules; None if nothing is left."""
    if not isinstance(custom_imports, dict):
        return None
    imports = custom_imports.get('imports', [])
    imports = [imports] if isinstance(imports, str) else list(imports)
    kept = [m for m in imports if m.split('.', 1)[0] != PACKAGE]
    return {**custom_imports, 'imports': kept} if kept else None


def plain_mmdet_config(cfg: Dict[str, Any]) -> Tuple[Dict[str, Any], List[str]]:
    """Return ``cfg`` (a plain dict) without anything of this package, and what was dropped.

    Raises:
        ValueError: A type of this package has no plain base to fall back to.
    """
    own = own_registered_types()
    dropped: List[str] = []
    cfg = {key: _plain(value, key, own, dropped) for key, value in cfg.items()}
    imports = _without_own_imports(cfg.pop('custom_imports', None))
    if imports is not None:
        cfg['custom_imports'] = imports
    return cfg, dropped
