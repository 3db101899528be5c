"""profile_step_stages.py (tools/analysis_tools/): a distill step's stages, nested as they run."""

import json

from mmdet_detrdistill.testing import run_tool

SCRIPT = 'tools/analysis_tools/profile_step_stages.py'


def test_stages_are_timed_inclusively_and_nest(tmp_path):
    out = tmp_path / 'stages.json'
    config = 'configs/oddetr/oddetr_tiny-dino-s_1xb8-synth.py'
    args = [SCRIPT, config, '--size', '96', '--batch', '1', '--iters', '1', '--json', str(out)]
    run = run_tool(args)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    steps, stages = result['steps'], result['stages']
    assert set(steps) == {'distill', 'student', 'teacher'} and min(steps.values()) > 0
    forward = stages['distiller.loss (forward)']
    assert forward < steps['distill']  # backward and the optimizer come after
    assert stages['decoder_outputs'] + stages['student_gt_loss'] <= forward
    # OD-DETR on a two-stage student: the EMA decodes the student's proposals inside the
    # student's ground-truth losses, without a transformer pass of its own
    assert 0 < stages['teacher_on_queries'] <= stages['student_gt_loss']
    assert stages['teacher.transformer'] <= stages['decoder_outputs']
    assert {'component guided.loss', 'component init_query.loss', 'component aux.loss'} <= set(
        stages
    )


def test_cfg_options_change_what_is_profiled_and_are_recorded(tmp_path):
    """``--cfg-options`` as in mmdet's tools: OD-DETR without its auxiliary groups has no stage
    of theirs; the JSON says which options the medians are of."""
    out = tmp_path / 'stages.json'
    config = 'configs/oddetr/oddetr_tiny-s_1xb8-synth.py'
    args = [SCRIPT, config, '--size', '64', '--batch', '1', '--iters', '1', '--json', str(out)]
    run = run_tool([*args, '--cfg-options', 'model.aux_groups=None'])
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result['cfg_options'] == ['model.aux_groups=None']
    assert 'component aux.loss' not in result['stages']
    assert 'component init_query.loss' in result['stages']
