"""Runner hooks (registered in mmdet's ``HOOKS``)."""

from .drop_executable_config_hook import DropExecutableConfigHook
from .rng_state_hook import RNGStateHook

__all__ = ['DropExecutableConfigHook', 'RNGStateHook']
