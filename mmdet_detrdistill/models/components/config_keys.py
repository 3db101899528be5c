"""Where a user configures a component, so that its errors name the user's own keys."""

from dataclasses import dataclass
from typing import Any, Dict, Mapping, Optional


@dataclass(frozen=True)
class ComponentKeys:
    """The config keys of one component, as written for the distiller in use.

    The same component is configured differently per method: D3ETR's fixed
    matching is ``model.matcher.fixed`` and ``model.fixed_losses``, DETRDistill's
    query prior is ``model.query_prior``, a ``ConfigurableDistiller`` entry (or
    an extra component of any preset) is ``model.components.<name>``. The
    distiller gives each component its keys (:func:`build_components`), and the
    component's errors name them.

    Attributes:
        config (str): Where its settings are, e.g. ``'model.query_prior'``.
        switch_off (str): The setting that switches it off, e.g.
            ``'model.query_prior=None'``.
    """

    config: str
    switch_off: str

    @classmethod
    def of_entry(cls, name: str) -> 'ComponentKeys':
        """The keys of the entry ``name`` of ``model.components``."""
        return cls(f'model.components.{name}', f'model.components.{name}=None')

    @classmethod
    def of_preset_arg(cls, arg: str) -> 'ComponentKeys':
        """The keys of a preset argument that takes a config dict or None (e.g. DETRDistill's
        ``query_prior``, OD-DETR's ``init_query``)."""
        return cls(f'model.{arg}', f'model.{arg}=None')


COMPONENTS_EXAMPLE = "dict(feature=dict(type='TargetAwareFeatureKD'))"


def require_dict(value: Any, key: str, example: str, allow_none: bool = False) -> None:
    """Refuse a config value that should be a dict (e.g. ``model.matcher=MixMatcher``).

    Args:
        value (Any): The value the config gives.
        key (str): Its config key, e.g. ``'model.matcher'``.
        example (str): A correct value to show, e.g. ``"dict(type='MixMatcher')"``.
        allow_none (bool): Whether None is allowed too. Defaults to False.

    Raises:
        TypeError: Naming the key, the value given and an example.
    """
    if isinstance(value, dict) or (allow_none and value is None):
        return
    also = ' (or None)' if allow_none else ''
    raise TypeError(
        f'{key} must be a config dict{also}, e.g. {key}={example}; got '
        f'{type(value).__name__} {value!r:.200}'
    )


#: a component built outside a distiller (tests, scripts)
UNNAMED = ComponentKeys('its config entry', 'its config entry set to None')


def preset_keys(
    chosen: Mapping[str, Any], args: Mapping[str, str], extra: Optional[Mapping] = None
) -> Dict[str, ComponentKeys]:
    """The config keys of a method preset's components.

    Args:
        chosen (Mapping[str, Any]): Component name -> the value of the preset
            argument that configures it (a dict merged over its defaults, or
            None to switch it off).
        args (Mapping[str, str]): Component name -> that argument's name, e.g.
            ``dict(query_prior='query_prior', logits='logits_kd')``.
        extra (Mapping, optional): The preset's ``components``; a name it also
            sets is configured there (``model.components.<name>``).

    Raises:
        TypeError: A value is neither a dict nor None (the message names the
            argument).
    """
    require_dict(extra, 'model.components', COMPONENTS_EXAMPLE, allow_none=True)
    for name, value in chosen.items():
        if value is not None and not isinstance(value, dict):
            raise TypeError(
                f'model.{args[name]} must be a config dict (merged over the defaults; dict() '
                f'keeps them) or None to switch it off, got {value!r}'
            )
    return {
        name: ComponentKeys.of_preset_arg(args[name])
        for name in chosen
        if name not in (extra or {})
    }
