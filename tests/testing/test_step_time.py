"""mmdet_detrdistill.testing.step_time: a timed step is a training step, timed fairly."""

import sys

import pytest
import torch

from mmdet_detrdistill.testing import make_batch, run_tool, step_time
from mmdet_detrdistill.testing.step_time import (
    build_distiller,
    optim_wrapper_for,
    ratios,
    train_step,
)

CONFIG = 'configs/d3etr/d3etr_tiny-t_tiny-s_1xb8-synth.py'


def test_a_timed_step_is_a_training_step_with_the_configs_optimizer():
    """Forward, backward, clipping, AdamW's update and zero_grad, as mmengine's train_step."""
    distiller = build_distiller(CONFIG, torch.device('cpu'))
    wrapper = optim_wrapper_for(CONFIG, distiller)
    assert type(wrapper.optimizer).__name__ == 'AdamW' and wrapper.clip_grad_kwargs
    batch = make_batch(distiller)
    before = [p.clone() for p in distiller.student.parameters()]
    train_step(distiller, batch, wrapper)()
    params = list(distiller.student.parameters())
    assert all(p.grad is None for p in params)  # zero_grad after the update
    assert all(len(wrapper.optimizer.state[p]) > 0 for p in params)  # AdamW state for each
    assert any(not torch.equal(a, b) for a, b in zip(before, params))


FAULTS_PER_STEP = """
import resource, sys, torch
from mmdet_detrdistill.testing.step_time import keep_freed_memory
if sys.argv[1] == 'keep':
    assert keep_freed_memory()
x = torch.randn(10 * 2**20)  # 40 MiB: above glibc's largest mmap threshold (32 MiB)
def step() -> int:
    start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    (x * 2 + 1).sum()  # two 40 MiB temporaries, freed at the end
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - start
print(*[step() for _ in range(8)])
"""


@pytest.mark.slow  # a memory probe in a fresh process
def test_allocator_keep_reuses_freed_memory_without_page_faults():
    """With ``keep``, later steps reuse the memory earlier ones freed (no page faults); with
    glibc's defaults every step faults its temporaries in again."""
    faults = {}
    for mode in ('keep', 'release'):
        run = run_tool([sys.executable, '-c', FAULTS_PER_STEP, mode])
        assert run.returncode == 0, run.stderr[-3000:]
        faults[mode] = [int(n) for n in run.stdout.split()]
    # after two warm-ups (as the benchmark's), the six kept steps together fault in less
    # memory than any one released step (the heap may still grow once, by one temporary)
    assert min(faults['release'][2:]) > 20000, faults  # two 40 MiB temporaries: 20480 pages
    assert sum(faults['keep'][2:]) < min(faults['release'][2:]), faults


def test_timing_is_interleaved_so_that_load_drift_falls_on_every_side(monkeypatch):
    """Each round times every side once, in turn: with a load that doubles halfway through
    the run, the ratio of two sides of equal work stays 1 (timed one side after the other,
    it would be 2)."""
    calls, clock = [], [0.0]
    monkeypatch.setattr(step_time.time, 'perf_counter', lambda: clock[0])

    def side(name):
        def fn():
            calls.append(name)
            clock[0] += 1.0 if len(calls) <= 3 * (step_time.WARMUP + 3) else 2.0

        return fn

    times = step_time.time_interleaved(
        dict(a=side('a'), b=side('b'), c=side('c')), 6, torch.device('cpu')
    )
    assert calls == ['a', 'b', 'c'] * (step_time.WARMUP + 6)
    assert times['a'] == times['b'] == times['c']


def test_memory_ratio_without_the_teacher_weights_subtracts_them_from_the_distill_peak():
    times = dict(student=1.0, teacher=1.0, distill=3.0, matching=0.0, matching_calls=0)
    memory = dict(
        student=dict(train=100, no_optimizer=80),
        distill=dict(train=250, no_optimizer=200, teacher_weights=50),
    )
    r = ratios(times, memory)
    assert r['memory'] == 2.5 and r['memory_no_teacher_weights'] == 2.0
    memory['distill']['teacher_weights'] = 0  # OD-DETR: the EMA is part of the method
    assert ratios(times, memory)['memory_no_teacher_weights'] is None


def test_cfg_options_parse_as_mmdets_and_a_malformed_item_is_refused():
    assert step_time.parse_cfg_options(
        ['model.init_query=None', 'model.ema.momentum=0.01', 'a.stages=[1,2]']
    ) == {'model.init_query': None, 'model.ema.momentum': 0.01, 'a.stages': [1, 2]}
    for bad in ('model.init_query', '=1'):
        with pytest.raises(ValueError, match='KEY=VALUE'):
            step_time.parse_cfg_options([bad])


def test_cfg_options_reach_the_model_and_the_optimizer_that_are_measured():
    """What the cost tools build is the config with ``--cfg-options`` merged in: here OD-DETR
    without its initial-query group, another learning rate, a student of 7 queries."""
    config = 'configs/oddetr/oddetr_tiny-s_1xb8-synth.py'
    options = {'model.init_query': None, 'optim_wrapper.optimizer.lr': 0.123}
    distiller = build_distiller(config, torch.device('cpu'), options)
    assert {'guided', 'aux'} <= set(
        distiller.components
    ) and 'init_query' not in distiller.components
    wrapper = optim_wrapper_for(config, distiller, options)
    assert {group['lr'] for group in wrapper.optimizer.param_groups} <= {0.123, 0.0123}
    student = step_time.build_student_alone(
        config, torch.device('cpu'), {'model.student.num_queries': 7}
    )
    assert student.num_queries == 7 and distiller.student.num_queries != 7
