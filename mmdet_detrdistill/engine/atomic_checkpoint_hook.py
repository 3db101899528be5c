"""mmengine's ``CheckpointHook``, with saves that a kill at any moment cannot break."""

import os
import os.path as osp
from typing import Optional, Tuple

from mmdet.registry import HOOKS
from mmengine.dist import barrier, is_main_process
from mmengine.fileio import LocalBackend
from mmengine.hooks import CheckpointHook

from .checkpoint_files import (
    checkpoint_step,
    publish,
    remove_temporary_files,
    temporary_name,
    write_text_atomically,
)
from .run_identity import (
    RUN_ID_FILE,
    RUN_ID_KEY,
    choose_resume_checkpoint,
    is_run_id,
    named_checkpoint,
    new_run_id,
    read_run_id_file,
    read_small_text,
    write_run_id_file,
)

LAST_CHECKPOINT = 'last_checkpoint'  # the file mmengine's find_latest_checkpoint reads
STALE_SUFFIX = '.stale'  # last_checkpoint of an earlier run, set aside (never deleted)
ALL_RANKS_HOOK = 'before_save_checkpoint_all_ranks'


@HOOKS.register_module()
class AtomicCheckpointHook(CheckpointHook):
    """``CheckpointHook`` (same arguments) whose interval checkpoints survive a kill, and whose
    ``--resume`` continues this run.

    MMEngine 0.10.7 deletes the checkpoint that ``max_keep_ckpts`` drops *before* it writes the
    new one, writes that one in place, then ``last_checkpoint``: a job killed mid-save (a
    preempted Slurm job) keeps no checkpoint, or a truncated one, and ``--resume`` fails. Here
    each save goes, on the main process:

    1. to ``.iter_N.pth.tmp`` next to its final name, flushed to disk, then renamed onto
       ``iter_N.pth`` (``os.replace``: the name only ever holds a complete file);
    2. ``last_checkpoint`` is rewritten the same way, once ``iter_N.pth`` is complete;
    3. only then is the checkpoint that ``max_keep_ckpts`` drops removed.

    Guarantee: an automatic resume (``resume=True`` without ``load_from``, ``--resume``) continues
    *this* run, the one that last trained in the work dir, from its newest complete checkpoint;
    it never resumes a checkpoint recorded as another run's (one left in a reused work dir).

    - Each training run has an id (32 hex digits): a run started from scratch draws a new one,
      a resumed run keeps the id of the checkpoint it loaded (one saved before run ids: the
      work dir's id, else a new one). It is recorded in every checkpoint (``meta['run_id']``)
      and in the work dir's ``run_id`` file; what is read back is validated, never used as a
      path. A run started from scratch moves a ``last_checkpoint`` left by an earlier run to
      ``last_checkpoint.stale``.
    - Before an automatic resume (``before_run``, ahead of ``Runner.load_or_resume``) the
      checkpoint is chosen by :func:`~.run_identity.choose_resume_checkpoint`, and the log says
      which file and why: the one ``last_checkpoint`` names when it is complete (unless a newer
      complete checkpoint of the same run exists: a kill came before ``last_checkpoint`` was
      updated); else the newest complete checkpoint of this run; none: training starts from
      scratch, ``last_checkpoint`` moved to ``last_checkpoint.stale``. No checkpoint is ever
      deleted but by ``max_keep_ckpts``.
    - Before every run, temporary files left by a kill are removed.

    Before each save, hooks with a ``before_save_checkpoint_all_ranks(runner)`` method are
    called on every rank (mmengine's ``before_save_checkpoint`` runs on rank 0 only):
    :class:`RNGStateHook` gathers each rank's RNG state there. Best checkpoints (``save_best``)
    and non-local backends (``backend_args``) are saved as mmengine does (with the run id; a
    non-local checkpoint directory is resumed as mmengine does). Only the main process touches
    files, and only its run id is recorded. Set by ``configs/_base_/distill_runtime.py``.
    """

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.run_id: Optional[str] = None  # of this training run (main process), see above
        self._loaded_run_id: Optional[str] = None  # of the checkpoint a resume loaded
        self._work_dir_run_id: Optional[Tuple[Optional[str]]] = None  # (id,) once read

    def before_run(self, runner) -> None:
        """Clean up after a killed save; for an automatic resume, choose its checkpoint."""
        if is_main_process():
            self._clean_up(runner)
            if runner._resume and runner._load_from is None:
                self._choose_resume_checkpoint(runner)
        barrier()  # every rank reads last_checkpoint after the main process chose

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Keep the run id of the checkpoint a resume loaded (a ``load_from`` starts a run)."""
        super().after_load_checkpoint(runner, checkpoint)
        meta = checkpoint.get('meta')
        run_id = meta.get(RUN_ID_KEY) if isinstance(meta, dict) else None
        self._loaded_run_id = run_id if runner._resume and is_run_id(run_id) else None

    def before_train(self, runner) -> None:
        """Set this run's id; record it in the work dir (main process)."""
        super().before_train(runner)
        self.run_id = self._loaded_run_id
        if is_main_process():
            self._start_run(runner)

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Record the run id in the checkpoint's ``meta['run_id']``."""
        super().before_save_checkpoint(runner, checkpoint)
        if self.run_id is not None:
            checkpoint.setdefault('meta', {})[RUN_ID_KEY] = self.run_id

    def _checkpoint_dir(self, runner) -> str:
        """Where the checkpoints go, as ``CheckpointHook.before_train`` (after this) sets it."""
        if self.out_dir is None or self.out_dir == runner.work_dir:
            return runner.work_dir
        return osp.join(self.out_dir, osp.basename(runner.work_dir.rstrip(osp.sep)))

    def _clean_up(self, runner) -> None:
        """Remove the temporary files of an interrupted save."""
        directory = self._checkpoint_dir(runner)
        folders = {runner.work_dir} if '://' in directory else {directory, runner.work_dir}
        for folder in sorted(folders):
            removed = remove_temporary_files(folder, self._is_own_file)
            if removed:
                runner.logger.warning(f'Removed files of an interrupted save: {removed}')

    def _read_work_dir_run_id(self, runner) -> Optional[str]:
        """The work dir's run id; a file that holds anything else is ignored, with a warning."""
        if self._work_dir_run_id is None:
            path = osp.join(runner.work_dir, RUN_ID_FILE)
            try:
                self._work_dir_run_id = (read_run_id_file(path),)
            except (OSError, ValueError) as err:
                runner.logger.warning(f'Ignored {path}: {err}')
                self._work_dir_run_id = (None,)
        return self._work_dir_run_id[0]

    def _read_pointer(self, runner, directory: str) -> Tuple[Optional[str], str]:
        """The checkpoint ``last_checkpoint`` names, if a checkpoint file of ``directory``;
        else ``None`` and what is wrong with it."""
        pointer = osp.join(runner.work_dir, LAST_CHECKPOINT)
        try:
            text = read_small_text(pointer)
        except (OSError, ValueError) as err:
            return None, f'cannot be used ({err})'
        if text is None:
            return None, 'does not exist'
        named = named_checkpoint(text, directory, self.filename_tmpl)
        if named is None:
            return None, f'holds {text[:200]!r}, not a checkpoint file of {directory}'
        return named, ''

    def _choose_resume_checkpoint(self, runner) -> None:
        """Point ``last_checkpoint`` at the checkpoint this run resumes from (see the class
        docstring); move it aside when there is none. Logs the choice and why."""
        directory = self._checkpoint_dir(runner)
        if '://' in directory:
            return  # not a local directory: resumed as mmengine does
        named, problem = self._read_pointer(runner, directory)
        choice = choose_resume_checkpoint(
            directory,
            self.filename_tmpl,
            named,
            self._read_work_dir_run_id(runner),
            runner.logger.warning,
            unusable=problem,
        )
        pointer = osp.join(runner.work_dir, LAST_CHECKPOINT)
        if choice.path is None:
            moved = self._set_pointer_aside(pointer)
            runner.logger.warning(
                f'Not resuming: {choice.reason}. Training starts from scratch'
                + (f'; {pointer} was moved to {moved}.' if moved else '.')
            )
        elif choice.path == named:
            runner.logger.info(f'Resuming from {choice.path}: {choice.reason}.')
        else:
            write_text_atomically(pointer, choice.path)
            runner.logger.warning(
                f'Resuming from {choice.path}: {choice.reason}. {pointer} now names it.'
            )

    @staticmethod
    def _set_pointer_aside(pointer: str) -> Optional[str]:
        """Rename ``last_checkpoint`` to ``last_checkpoint.stale``; return the new name (``None``
        when there was no file)."""
        if not osp.isfile(pointer):
            return None
        publish(pointer, pointer + STALE_SUFFIX)
        return pointer + STALE_SUFFIX

    def _start_run(self, runner) -> None:
        """Give this run its id (main process, ``before_train``) and record it in the work dir.

        A resumed run keeps the id of the checkpoint it loaded, else (it loaded a checkpoint
        saved before run ids, or none) the work dir's. Any other run gets a new id, and a
        ``last_checkpoint`` left by an earlier run is moved to ``last_checkpoint.stale``.
        """
        work_dir_id = self._read_work_dir_run_id(runner)
        if self.run_id is not None:
            how = 'the id of the resumed checkpoint'
        elif runner._resume and work_dir_id is not None:
            self.run_id, how = work_dir_id, 'the id the work dir records'
        else:
            self.run_id, how = new_run_id(), 'a new id'
            if not runner._resume:
                pointer = osp.join(runner.work_dir, LAST_CHECKPOINT)
                moved = self._set_pointer_aside(pointer)
                if moved:
                    runner.logger.info(
                        f'A new training run: {pointer}, left by an earlier run, was moved to '
                        f'{moved} (--resume continues this run, not that one).'
                    )
        if self.run_id != work_dir_id:
            write_run_id_file(osp.join(runner.work_dir, RUN_ID_FILE), self.run_id)
            self._work_dir_run_id = (self.run_id,)
        runner.logger.info(
            f'Run id {self.run_id} ({how}): recorded in {osp.join(runner.work_dir, RUN_ID_FILE)} '
            "and in each checkpoint's meta['run_id'], so that --resume continues this run."
        )

    def _is_own_file(self, name: str) -> bool:
        """Whether ``name`` is ``last_checkpoint``, ``run_id`` or a checkpoint of this hook."""
        own = name in (LAST_CHECKPOINT, RUN_ID_FILE)
        return own or checkpoint_step(name, self.filename_tmpl) is not None

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
