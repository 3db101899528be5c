"""Keep ``Runner.resume`` from executing config text stored in a checkpoint."""

from mmdet.registry import HOOKS
from mmengine.hooks import Hook

from ..utils.checkpoint import drop_executable_config


@HOOKS.register_module()
class DropExecutableConfigHook(Hook):
    """Drop ``meta['config']`` from every checkpoint the Runner loads.

    MMEngine 0.10.7's ``Runner.resume`` passes ``meta['config']`` to
    ``Config.fromstring``, which executes it as Python: a checkpoint could run
    code on resume even though its tensors load with ``weights_only=True``.
    MMEngine itself writes the config under ``meta['cfg']`` and only reads
    ``'config'`` to compare GPU counts, so dropping it loses nothing.
    Set by ``configs/_base_/distill_runtime.py``.
    """

    priority = 'VERY_HIGH'

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Remove the executable config before ``resume`` can read it."""
        if drop_executable_config(checkpoint):
            runner.logger.warning(
                "Ignored meta['config'] in the loaded checkpoint: MMEngine would execute it "
                'as Python code. The checkpoint was loaded without it.'
            )
