"""StudentAndEMAValLoop / StudentAndEMATestLoop: the student's metrics, then its EMA's."""

from types import SimpleNamespace
from typing import List, Sequence

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.dataset import pseudo_collate
from mmengine.evaluator import BaseMetric, Evaluator
from torch.utils.data import DataLoader

from mmdet_detrdistill.engine import StudentAndEMATestLoop, StudentAndEMAValLoop
from mmdet_detrdistill.testing import tiny_detr_cfg

LOOPS = [(StudentAndEMAValLoop, 'val'), (StudentAndEMATestLoop, 'test')]


class PredictionRecorder(BaseMetric):
    """Keeps every evaluated pass's predictions; its metric is the number of images."""

    default_prefix = 'toy'

    def __init__(self) -> None:
        super().__init__()
        self.passes: List[list] = []

    def process(self, data_batch: dict, data_samples: Sequence) -> None:
        for sample in data_samples:  # the Evaluator passes them as dicts
            pred = sample['pred_instances']
            self.results.append((pred['bboxes'], pred['scores'], pred['labels']))

    def compute_metrics(self, results: list) -> dict:
        self.passes.append(list(results))
        return dict(num_images=len(results))


class FakeRunner:
    """What the loops use of mmengine's Runner: the model, the visualizer and the hooks."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.visualizer = SimpleNamespace(dataset_meta=None)
        self.hooks: List[tuple] = []

    def call_hook(self, name: str, **kwargs) -> None:
        self.hooks.append((name, kwargs))


def _loader(num_images: int = 3) -> DataLoader:
    packed = demo_mm_inputs(num_images, [(3, 64, 64)] * num_images, num_items=[2] * num_images)
    samples = [dict(inputs=i, data_samples=s) for i, s in zip(*packed.values())]
    return DataLoader(samples, batch_size=2, collate_fn=pseudo_collate)


def _oddetr_with_distinct_ema() -> torch.nn.Module:
    model = MODELS.build(dict(type='ODDETRDistiller', student=tiny_detr_cfg('conditional')))
    model.init_weights()  # the EMA starts as the student's copy: make it another model
    with torch.no_grad():
        for p in model.ema_model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    return model


@torch.no_grad()
def _predictions(detector: torch.nn.Module, loader: DataLoader) -> list:
    detector.eval()
    preds = [s.pred_instances for batch in loader for s in detector.val_step(batch)]
    return [(p.bboxes, p.scores, p.labels) for p in preds]


def _same(a: list, b: list) -> bool:
    return len(a) == len(b) and all(
        all(torch.equal(x, y) for x, y in zip(one, other)) for one, other in zip(a, b)
    )


@pytest.mark.parametrize('loop_cls, mode', LOOPS)
def test_the_student_is_evaluated_then_the_ema_with_the_ema_weights(loop_cls, mode):
    model = _oddetr_with_distinct_ema()
    loader = _loader()
    student, ema = _predictions(model, loader), _predictions(model.ema_model, loader)
    assert not _same(student, ema)  # the two models predict differently: the test can tell
    recorder = PredictionRecorder()
    runner = FakeRunner(model.train())
    metrics = loop_cls(runner, loader, Evaluator([recorder])).run()

    assert _same(recorder.passes[0], student) and _same(recorder.passes[1], ema)
    # the student's keys unchanged and first (save_best='auto' takes the first), the EMA's next
    assert list(metrics) == ['toy/num_images', 'ema/toy/num_images']
    assert metrics['ema/toy/num_images'] == 3
    epoch_end = [kw for name, kw in runner.hooks if name == f'after_{mode}_epoch']
    assert epoch_end == [dict(metrics=metrics)]
    iters = [kw['batch_idx'] for name, kw in runner.hooks if name == f'after_{mode}_iter']
    assert iters == [0, 1]  # per-iteration hooks: the student's pass only
    assert not model.training  # evaluated in eval mode, as mmengine's loops do


@pytest.mark.parametrize('loop_cls, mode', LOOPS)
def test_a_model_without_ema_is_refused_with_the_plain_loop_named(loop_cls, mode):
    detector = MODELS.build(tiny_detr_cfg('conditional'))
    plain = 'ValLoop' if mode == 'val' else 'TestLoop'
    with pytest.raises(TypeError, match=rf"ConditionalDETR has no EMA model.*type='{plain}'"):
        loop_cls(FakeRunner(detector), _loader(), Evaluator([PredictionRecorder()]))
