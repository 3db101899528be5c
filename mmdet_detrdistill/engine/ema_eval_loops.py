"""Validation and test loops that evaluate a model and then its EMA: ``coco/*`` and ``ema/coco/*``.

OD-DETR's EMA teacher is a result in its own right (the paper reports OD-DETR and its EMA
version). ``val_cfg = dict(type='StudentAndEMAValLoop')`` (the OD-DETR configs) evaluates both at
every validation; ``test_cfg = dict(type='StudentAndEMATestLoop')`` does the same in
``tools/test.py`` (``--cfg-options test_cfg.type=StudentAndEMATestLoop``), whose default
(mmengine's ``TestLoop``) evaluates the student alone. The model names its EMA through an
``ema_model`` attribute (:attr:`ODDETRDistiller.ema_model`): a detector predicting through its
own ``val_step`` / ``test_step``. Nothing of the model is switched: the student's pass is
mmengine's, the EMA's calls the EMA model.

Both passes share the dataloader and the evaluator. The metrics of one ``after_val_epoch`` (or
``after_test_epoch``) are the student's, unchanged and first (``save_best='coco/bbox_mAP'``
and ``'auto'`` keep choosing the student), then the EMA's with an ``ema/`` prefix
(``save_best='ema/coco/bbox_mAP'`` chooses on the EMA). The per-iteration hooks (progress
logging, visualization) see the student's pass only.
"""

from typing import Any, Dict, List, Union

import torch
from mmdet.registry import LOOPS
from mmengine.evaluator import Evaluator
from mmengine.logging import print_log
from mmengine.model import BaseModel, is_model_wrapper
from mmengine.runner import TestLoop, ValLoop
from mmengine.runner.amp import autocast
from mmengine.runner.loops import _parse_losses
from torch import nn
from torch.utils.data import DataLoader

EMA_PREFIX = 'ema/'
PLAIN_LOOPS = dict(val_cfg='ValLoop', test_cfg='TestLoop')  # mmengine's, the student alone


def ema_model_of(model: nn.Module, cfg_key: str) -> BaseModel:
    """The EMA model of ``model`` (a DDP wrapper unwrapped): its ``ema_model`` attribute.

    Args:
        model (nn.Module): The runner's model.
        cfg_key (str): Where the loop is chosen (``'val_cfg'`` or ``'test_cfg'``), for the error.

    Raises:
        TypeError: ``model`` has no ``ema_model``; the message names the loop to use instead.
    """
    module = model.module if is_model_wrapper(model) else model
    ema = getattr(module, 'ema_model', None)
    if not isinstance(ema, BaseModel):
        raise TypeError(
            f'{cfg_key}: this loop evaluates a model and its EMA, but {type(module).__name__} '
            'has no EMA model (no `ema_model` attribute, as ODDETRDistiller has): set '
            f"{cfg_key}=dict(type='{PLAIN_LOOPS[cfg_key]}') for this model"
        )
    return ema


@torch.no_grad()
def evaluate_ema(
    ema: BaseModel, dataloader: DataLoader, evaluator: Evaluator, step: str, fp16: bool = False
) -> Dict[str, Any]:
    """Predict every batch with ``ema`` (its ``step``: ``'val_step'`` or ``'test_step'``) and
    evaluate: the evaluator's metrics, each key prefixed with ``'ema/'``."""
    print_log(f'Evaluating the EMA model ({EMA_PREFIX}* metrics)', logger='current')
    for data_batch in dataloader:
        with autocast(enabled=fp16):
            outputs = getattr(ema, step)(data_batch)
        evaluator.process(data_samples=outputs, data_batch=data_batch)
    metrics = evaluator.evaluate(len(dataloader.dataset))
    return {f'{EMA_PREFIX}{key}': value for key, value in metrics.items()}


class StudentThenEMAMixin:
    """The run shared by both loops: the student's pass (mmengine's), then the EMA's.

    ``stage`` (``'val'`` or ``'test'``, set by the loop class) names the hooks, the loss buffer
    (``val_loss`` / ``test_loss``), the EMA's step and the config key in errors. Comes before
    mmengine's ``ValLoop`` / ``TestLoop`` in the bases.
    """

    stage: str

    def __init__(
        self,
        runner,
        dataloader: Union[DataLoader, Dict],
        evaluator: Union[Evaluator, Dict, List],
        fp16: bool = False,
    ) -> None:
        super().__init__(runner, dataloader, evaluator, fp16)
        self.ema_model = ema_model_of(runner.model, f'{self.stage}_cfg')

    def run(self) -> dict:
        """``ValLoop.run`` / ``TestLoop.run`` (copied: neither has a step between evaluating
        and ``after_{stage}_epoch``), with the EMA's metrics added before that hook."""
        stage, call_hook = self.stage, self.runner.call_hook
        call_hook(f'before_{stage}')
        call_hook(f'before_{stage}_epoch')
        self.runner.model.eval()
        losses = getattr(self, f'{stage}_loss')
        losses.clear()
        for idx, data_batch in enumerate(self.dataloader):
            self.run_iter(idx, data_batch)
        metrics = self.evaluator.evaluate(len(self.dataloader.dataset))
        if losses:
            metrics.update(_parse_losses(losses, stage))
        step = f'{stage}_step'
        ema = evaluate_ema(self.ema_model, self.dataloader, self.evaluator, step, self.fp16)
        metrics.update(ema)
        call_hook(f'after_{stage}_epoch', metrics=metrics)
        call_hook(f'after_{stage}')
        return metrics


@LOOPS.register_module()
class StudentAndEMAValLoop(StudentThenEMAMixin, ValLoop):
    """mmengine's ``ValLoop`` on the model, then the same on its EMA (``ema/`` metrics).

    Args:
        runner (Runner): The runner; ``runner.model`` must have an ``ema_model``.
        dataloader (DataLoader | dict): The validation dataloader (or its config).
        evaluator (Evaluator | dict | list): The evaluator (or its config).
        fp16 (bool): Validate under autocast. Defaults to False.
    """

    stage = 'val'


@LOOPS.register_module()
class StudentAndEMATestLoop(StudentThenEMAMixin, TestLoop):
    """mmengine's ``TestLoop`` on the model, then the same on its EMA (``ema/`` metrics).

    Args:
        runner (Runner): The runner; ``runner.model`` must have an ``ema_model``.
        dataloader (DataLoader | dict): The test dataloader (or its config).
        evaluator (Evaluator | dict | list): The evaluator (or its config).
        fp16 (bool): Test under autocast. Defaults to False.
    """

    stage = 'test'
