"""Runner hooks (``HOOKS``); an optimizer-wrapper constructor (``OPTIM_WRAPPER_CONSTRUCTORS``)."""

from .atomic_checkpoint_hook import AtomicCheckpointHook
from .drop_executable_config_hook import DropExecutableConfigHook
from .match_instability_hook import MatchInstabilityHook
from .rng_state_hook import RNGStateHook
from .student_optim_constructor import StudentOptimWrapperConstructor

__all__ = [
    'AtomicCheckpointHook',
    'DropExecutableConfigHook',
    'MatchInstabilityHook',
    'RNGStateHook',
    'StudentOptimWrapperConstructor',
]
