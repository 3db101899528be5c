"""Runner hooks (``HOOKS``); an optimizer-wrapper constructor (``OPTIM_WRAPPER_CONSTRUCTORS``)."""

from .drop_executable_config_hook import DropExecutableConfigHook
from .rng_state_hook import RNGStateHook
from .student_optim_constructor import StudentOptimWrapperConstructor

__all__ = ['DropExecutableConfigHook', 'RNGStateHook', 'StudentOptimWrapperConstructor']
