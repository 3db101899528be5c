"""Under mixed precision (``--amp``) the teacher runs inside the step's autocast region.

mmengine's ``AmpOptimWrapper.optim_context`` wraps the data preprocessor and the model's
``loss`` in ``autocast``; the distiller runs the teacher inside ``loss``, so the teacher's
forward runs in the autocast dtype too (its weights stay fp32: autocast casts op by op).
"""

from contextlib import contextmanager

import pytest
import torch
from mmdet.registry import MODELS
from mmdet.testing import demo_mm_inputs
from mmengine.optim import OptimWrapper
from mmengine.runner.amp import autocast

from mmdet_detrdistill.models.distillers.base_distiller import DETRDistillerBase
from mmdet_detrdistill.testing import distiller_cfg, tiny_detr_cfg

METHODS = ['D3ETRDistiller', 'DETRDistillDistiller', 'ODDETRDistiller']


class CPUAmpOptimWrapper(OptimWrapper):
    """``AmpOptimWrapper``'s forward context (bf16 autocast), without its CUDA-only scaler."""

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), autocast(dtype=torch.bfloat16):
            yield


@pytest.mark.parametrize('method', METHODS)
def test_teacher_forward_runs_in_the_autocast_dtype(method, monkeypatch):
    student, teacher = tiny_detr_cfg('conditional'), tiny_detr_cfg('conditional', num_queries=12)
    model = MODELS.build(distiller_cfg(student, teacher, method=method))
    model.init_weights()
    model.train()
    seen = []  # (is the teacher, autocast on, dtype of its logits) per decoder_outputs call
    real = DETRDistillerBase.decoder_outputs

    def recording(net, *args):
        out = real(net, *args)
        seen.append((net is model.teacher, torch.is_autocast_enabled('cpu'), out.cls_scores.dtype))
        return out

    monkeypatch.setattr(DETRDistillerBase, 'decoder_outputs', staticmethod(recording))
    torch.manual_seed(0)
    data = demo_mm_inputs(2, [(3, 64, 64), (3, 64, 48)], num_items=[3, 2], num_classes=3)
    wrapper = CPUAmpOptimWrapper(torch.optim.AdamW(model.student.parameters(), lr=1e-4))
    log_vars = model.train_step(data, wrapper)
    assert seen[0] == (True, True, torch.bfloat16)  # the teacher first, under autocast, in bf16
    assert seen[1][1:] == (True, torch.bfloat16)  # then the student
    assert all(p.dtype == torch.float32 for p in model.teacher.parameters())
    assert all(torch.isfinite(v).all() for v in log_vars.values())
