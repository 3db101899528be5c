"""Runner hooks (registered in mmdet's ``HOOKS``)."""

from .drop_executable_config_hook import DropExecutableConfigHook

__all__ = ['DropExecutableConfigHook']
