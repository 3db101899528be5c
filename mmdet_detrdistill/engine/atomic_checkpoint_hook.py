"""mmengine's ``CheckpointHook``, with saves that a kill at any moment cannot break."""

import os
import os.path as osp
from typing import Optional

from mmdet.registry import HOOKS
from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from .checkpoint_files import (
    checkpoint_step,
    is_complete_checkpoint,
    newest_complete_checkpoint,
    publish,
    remove_temporary_files,
    temporary_name,
    write_text_atomically,
)

LAST_CHECKPOINT = 'last_checkpoint'  # the file mmengine's find_latest_checkpoint reads
ALL_RANKS_HOOK = 'before_save_checkpoint_all_ranks'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose interval checkpoints survive a kill.

    MMEngine 0.10.7 deletes the checkpoint that ``max_keep_ckpts`` drops *before* it writes the
    new one, writes that one in place, then ``last_checkpoint``: a job killed mid-save (a
    preempted Slurm job) keeps no checkpoint, or a truncated one, and ``--resume`` fails. Here
    each save goes, on the main process:

    1. to ``.iter_N.pth.tmp`` next to its final name, flushed to disk, then renamed onto
       ``iter_N.pth`` (``os.replace``: the name only ever holds a complete file);
    2. ``last_checkpoint`` is rewritten the same way, once ``iter_N.pth`` is complete;
    3. only then is the checkpoint that ``max_keep_ckpts`` drops removed.

    Before every run (``before_run``, ahead of ``Runner.load_or_resume``) temporary files left
    by a kill are removed and ``last_checkpoint`` is pointed at the newest complete
    checkpoint when it names a missing, truncated or older one, so ``resume=True`` (``--resume``)
    continues from the newest complete checkpoint. Before each save, hooks with a
    ``before_save_checkpoint_all_ranks(runner)`` method are called on every rank (mmengine's
    ``before_save_checkpoint`` runs on rank 0 only): :class:`RNGStateHook` gathers each rank's
    RNG state there. Best checkpoints (``save_best``) and non-local backends (``backend_args``)
    are saved as mmengine does. Set by ``configs/_base_/distill_runtime.py``.
    """

    def before_run(self, runner) -> None:
        """Clean up after a killed save and repair ``last_checkpoint``."""
        if is_main_process():
            self._repair(runner)
        barrier()  # every rank reads last_checkpoint after the repair

    def _checkpoint_dir(self, runner) -> str:
        """Where the checkpoints go, as ``CheckpointHook.before_train`` (after this) sets it."""
        if self.out_dir is None or self.out_dir == runner.work_dir:
            return runner.work_dir
        return osp.join(self.out_dir, osp.basename(runner.work_dir.rstrip(osp.sep)))

    def _repair(self, runner) -> None:
        directory = self._checkpoint_dir(runner)
        if '://' in directory:
            return  # not a local directory
        for folder in {directory, runner.work_dir}:
            removed = remove_temporary_files(folder, self._is_own_file)
            if removed:
                runner.logger.warning(f'Removed files of an interrupted save: {removed}')
        newest = newest_complete_checkpoint(directory, self.filename_tmpl)
        if newest is None:
            return
        pointer = osp.join(runner.work_dir, LAST_CHECKPOINT)
        named = self._read_pointer(pointer)
        if named is not None and is_complete_checkpoint(named):
            named_step = checkpoint_step(osp.basename(named), self.filename_tmpl)
            if named_step is None or named_step >= newest[0]:
                return
        runner.logger.warning(
            f'{pointer} names {named!r}, missing, incomplete or older than the newest '
            f'complete checkpoint: it now names {newest[1]}.'
        )
        write_text_atomically(pointer, newest[1])

    def _is_own_file(self, name: str) -> bool:
        """Whether ``name`` is ``last_checkpoint`` or a checkpoint of this hook."""
        return name == LAST_CHECKPOINT or checkpoint_step(name, self.filename_tmpl) is not None

    @staticmethod
    def _read_pointer(pointer: str) -> Optional[str]:
        if not osp.isfile(pointer):
            return None
        with open(pointer) as f:
            return f.read().strip() or None

    def _save_checkpoint_with_step(self, runner, step: int, meta: dict) -> None:
        """Save ``iter_{step}.pth`` (or ``epoch_``) atomically, then drop the oldest one.

        The bookkeeping of mmengine 0.10.7's ``CheckpointHook._save_checkpoint_with_step``
        (``keep_ckpt_ids``, ``last_ckpt``), with the file operations reordered.
        """
        if not isinstance(self.file_backend, LocalBackend):
            return super()._save_checkpoint_with_step(runner, step, meta)
        dropped = None
        if self.max_keep_ckpts > 0 and not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                dropped = self.keep_ckpt_ids.popleft()
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))
        filename = self.filename_tmpl.format(step)
        self.last_ckpt = osp.join(self.out_dir, filename)
        runner.message_hub.update_info('last_ckpt', self.last_ckpt)

        runner.call_hook(ALL_RANKS_HOOK)
        tmp_path = osp.join(self.out_dir, temporary_name(filename))
        try:
            runner.save_checkpoint(  # rank 0 only (master_only)
                self.out_dir,
                temporary_name(filename),
                self.file_client_args,
                save_optimizer=self.save_optimizer,
                save_param_scheduler=self.save_param_scheduler,
                meta=meta,
                by_epoch=self.by_epoch,
                backend_args=self.backend_args,
                **self.args,
            )
        except BaseException:
            if is_main_process() and osp.exists(tmp_path):
                os.remove(tmp_path)
            raise
        if not is_main_process():
            return
        publish(tmp_path, self.last_ckpt)
        write_text_atomically(osp.join(runner.work_dir, LAST_CHECKPOINT), self.last_ckpt)
        if dropped is not None:
            self._remove(osp.join(self.out_dir, self.filename_tmpl.format(dropped)))

    @staticmethod
    def _remove(path: str) -> None:
        if osp.isfile(path):
            os.remove(path)
