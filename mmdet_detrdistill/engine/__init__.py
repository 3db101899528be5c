"""Runner hooks (``HOOKS``); an optimizer-wrapper constructor (``OPTIM_WRAPPER_CONSTRUCTORS``);
validation/test loops that also evaluate a model's EMA (``LOOPS``)."""

from .atomic_checkpoint_hook import AtomicCheckpointHook
from .drop_executable_config_hook import DropExecutableConfigHook
from .ema_eval_loops import StudentAndEMATestLoop, StudentAndEMAValLoop
from .match_instability_hook import MatchInstabilityHook
from .rng_state_hook import RNGStateHook
from .run_identity import ResumeChoice, checkpoint_run_id, choose_resume_checkpoint
from .student_optim_constructor import StudentOptimWrapperConstructor

__all__ = [
    'AtomicCheckpointHook',
    'DropExecutableConfigHook',
    'MatchInstabilityHook',
    'RNGStateHook',
    'ResumeChoice',
    'checkpoint_run_id',
    'choose_resume_checkpoint',
    'StudentOptimWrapperConstructor',
    'StudentAndEMAValLoop',
    'StudentAndEMATestLoop',
]
