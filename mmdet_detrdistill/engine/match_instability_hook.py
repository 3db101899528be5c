"""OD-DETR's matching instability: a fixed set of training images, re-matched during training."""

import json
import os.path as osp
import random
from contextlib import contextmanager
from typing import Dict, Iterator, List, Optional

import numpy as np
import torch
from mmdet.registry import HOOKS
from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from torch import Tensor, nn
from torch.utils.data import DataLoader

from ..models.common import pred_instances
from ..models.task_modules.match_stability import query_of_each_gt

SCALAR_KEY = 'epoch_match_instability'
#: the same quantity for the EMA model of a distiller that has one (OD-DETR)
EMA_SCALAR_KEY = 'ema_epoch_match_instability'
#: one JSON object per probe, appended in the work_dir: ``{"iter": I, "epoch": E, SCALAR_KEY: V,
#: EMA_SCALAR_KEY: V}`` (the EMA key only with an EMA model; ``"epoch"`` with ``by_epoch``)
RECORD_FILE = 'match_instability.jsonl'


@contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block without changing Python's, NumPy's or torch's (CPU and CUDA) random state."""
    py_state, np_state = random.getstate(), np.random.get_state()
    devices = [torch.cuda.current_device()] if torch.cuda.is_available() else []
    try:
        with torch.random.fork_rng(devices=devices):
            yield
    finally:
        random.setstate(py_state)
        np.random.set_state(np_state)


def trained_detector(model: nn.Module) -> nn.Module:
    """The detector being trained: a distiller's ``student``, else the model itself."""
    model = model.module if is_model_wrapper(model) else model
    return getattr(model, 'student', model)


def ema_detector(model: nn.Module) -> Optional[nn.Module]:
    """A distiller's EMA model (``ema_model``, as OD-DETR's), else None."""
    model = model.module if is_model_wrapper(model) else model
    return getattr(model, 'ema_model', None)


def probe_batches(dataloader: DataLoader, num_images: int, batch_size: int) -> List[dict]:
    """The first ``num_images`` samples of the loader's dataset, through its pipeline once
    (random flips drawn once, then fixed), collated into batches; training's random state is
    left as it was."""
    dataset = dataloader.dataset
    with preserved_rng():
        samples = [dataset[i] for i in range(min(num_images, len(dataset)))]
    return [
        dataloader.collate_fn(samples[i : i + batch_size])
        for i in range(0, len(samples), batch_size)
    ]


@torch.no_grad()
def final_layer_assignment(detector: nn.Module, batches: List[dict]) -> List[Tensor]:
    """The query matched to each GT box of each image (-1 if none), (num_gts,) per image.

    The detector runs in eval mode (no dropout; its train/eval mode is restored); the last
    decoder layer's predictions are matched to the GT by ``detector.bbox_head.assigner``, as
    the head matches them for its loss.
    """
    was_training = detector.training
    detector.eval()
    out = []
    try:
        for batch in batches:
            data = detector.data_preprocessor(batch, False)
            cls_scores, bbox_preds = detector(**data, mode='tensor')[:2]  # (L, bs, N, .)
            samples = data['data_samples']
            preds = pred_instances(cls_scores[-1], bbox_preds[-1], [s.metainfo for s in samples])
            for pred, sample in zip(preds, samples):
                result = detector.bbox_head.assigner.assign(
                    pred_instances=pred, gt_instances=sample.gt_instances, img_meta=sample.metainfo
                )
                out.append(query_of_each_gt(result.num_gts, result.gt_inds))
    finally:
        detector.train(was_training)
    return out


def changed_fraction(before: List[Tensor], after: List[Tensor]) -> Optional[float]:
    """Fraction of GT boxes (over all images) whose matched query differs; None without GT."""
    changed = sum(int((b != a).sum()) for b, a in zip(before, after))
    total = sum(len(b) for b in before)
    return changed / total if total else None


@HOOKS.register_module()
class MatchInstabilityHook(Hook):
    """Log OD-DETR's matching instability of the trained detector.

    OD-DETR (arXiv 2406.05791) measures the instability DN-DETR defined (Li et
    al., CVPR 2022): for the same training image, how often the query matched
    to a GT box changes from one epoch to the next. This hook
    keeps a fixed probe set, the first ``num_images`` samples of the training
    dataset (through its pipeline once); every ``interval`` iterations (or
    epochs, ``by_epoch``) it matches the detector's last-layer predictions on
    them to their GT with the head's own assigner and logs

        epoch_match_instability = #{GT boxes whose matched query changed} / #{GT boxes}

    against the previous probe. DN-DETR's IS counts the changed entries of
    the per-query index vector instead (a GT moving from query a to query b
    changes two entries); counted per GT box, it reads as a fraction.

    The assignment is the model's own (``bbox_head.assigner``), not the one a
    distiller may train with (OD-DETR's teacher-guided assignment): it is the
    same quantity with and without guidance. A distiller's ``student`` is
    probed. The detector runs in eval mode, under no_grad; the probe set is
    built without touching training's random state, so a run with the hook
    trains exactly as without it. Runs on the main process only. The
    reference of the first probe is the model when training starts (after a
    resume: the resumed model).

    A distiller with an EMA model (OD-DETR's ``ema_model``) has that model
    probed too, the same way, as ``ema_epoch_match_instability``: OD-DETR's
    Fig. 1 compares the student's instability with its EMA teacher's.

    Each probe's values go to the message hub (``train/epoch_match_instability``,
    ``train/ema_epoch_match_instability``, shown in the following training log
    lines), to one log line per probe (``epoch_match_instability at iter I/N:
    V``, ``at epoch E/N`` with ``by_epoch``) and, as one JSON object per probe,
    to ``WORK_DIR/match_instability.jsonl`` (:data:`RECORD_FILE`: ``iter``,
    ``epoch``, and the values; what the study tools read).

    Args:
        num_images (int): Probe images. Defaults to 32.
        interval (int): Iterations (epochs with ``by_epoch``) between probes.
            Defaults to 50.
        by_epoch (bool): Probe after every ``interval`` epochs instead.
            Defaults to False.
        batch_size (int): Probe images per forward pass. Defaults to 8.
    """

    priority = 'NORMAL'  # before LoggerHook: the log line of a probe's iteration shows it

    def __init__(
        self, num_images: int = 32, interval: int = 50, by_epoch: bool = False, batch_size: int = 8
    ) -> None:
        for key, value in dict(
            num_images=num_images, interval=interval, batch_size=batch_size
        ).items():
            if value < 1:
                raise ValueError(f'MatchInstabilityHook: {key}={value}; set it to 1 or more')
        self.num_images, self.interval, self.by_epoch = num_images, interval, by_epoch
        self.batch_size = batch_size
        self._batches: List[dict] = []
        self._previous: Dict[str, List[Tensor]] = {}

    def _assignments(self, runner) -> Dict[str, List[Tensor]]:
        """The probe set's final-layer assignment of the student (and of the EMA model)."""
        models = {SCALAR_KEY: trained_detector(runner.model)}
        ema = ema_detector(runner.model)
        if ema is not None:
            models[EMA_SCALAR_KEY] = ema
        return {key: final_layer_assignment(m, self._batches) for key, m in models.items()}

    def before_train(self, runner) -> None:
        """Build the probe set and match it once, as the reference of the first probe."""
        if not is_main_process():
            return
        self._batches = probe_batches(runner.train_dataloader, self.num_images, self.batch_size)
        self._previous = self._assignments(runner)

    def after_train_iter(self, runner, batch_idx: int, data_batch=None, outputs=None) -> None:
        if not self.by_epoch and self.every_n_train_iters(runner, self.interval):
            self.probe(runner, f'iter {runner.iter + 1}/{runner.max_iters}')

    def after_train_epoch(self, runner) -> None:
        if self.by_epoch and self.every_n_epochs(runner, self.interval):
            self.probe(runner, f'epoch {runner.epoch + 1}/{runner.max_epochs}')

    def probe(self, runner, when: str) -> Optional[float]:
        """Match the probe set again; log, record and return the student's fraction of
        changed matches."""
        if not is_main_process():
            return None
        current = self._assignments(runner)
        previous, self._previous = self._previous, current
        values = {
            key: changed_fraction(previous[key], now)
            for key, now in current.items()
            if key in previous
        }
        values = {key: v for key, v in values.items() if v is not None}
        if not values:
            return None
        num_gts = sum(len(q) for q in current[SCALAR_KEY])
        for key, value in values.items():
            runner.message_hub.update_scalar(f'train/{key}', value)
            runner.logger.info(
                f'{key} at {when}: {value:.4f} '
                f'({num_gts} GT boxes of {len(current[SCALAR_KEY])} probe images)'
            )
        record = dict(iter=runner.iter + 1, **values)
        if self.by_epoch:
            record['epoch'] = runner.epoch + 1
        with open(osp.join(runner.work_dir, RECORD_FILE), 'a') as f:
            f.write(json.dumps(record) + '\n')
        return values.get(SCALAR_KEY)
