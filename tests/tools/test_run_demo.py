"""The embedded default runs every method end to end for every family (``--quick``).

Conditional DETR, the default family, is run by .ci/run itself."""

import json
import subprocess
import sys

import pytest

from mmdet_detrdistill.testing import REPO_ROOT

pytestmark = pytest.mark.slow  # trains the demo (teacher, baseline, students) per family

# method -> (results row, a loss its log must name)
METHODS = {
    'd3etr': ('D3ETR student', 'd3etr.fixed.d1.loss_cross_attn'),
    'detrdistill': ('DETRDistill student', 'detrdistill.query_prior.d1.loss_iou'),
    'oddetr': ('OD-DETR student', 'layer_match_instability'),
}


@pytest.mark.parametrize('family', ['dab', 'deformable', 'dino'])
def test_quick_demo_runs_each_family(family, tmp_path):
    cmd = [
        sys.executable,
        'tools/run_demo.py',
        '--quick',
        '--family',
        family,
        '--work-dir',
        str(tmp_path),
        '--data-root',
        str(tmp_path / 'data'),
        '--method',
        *METHODS,
    ]
    run = subprocess.run(cmd, cwd=REPO_ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '| D3ETR student |' in run.stdout
    with open(tmp_path / 'results.json') as f:
        records = json.load(f)
    assert set(records) == {'teacher', 'baseline student'} | {row for row, _ in METHODS.values()}
    assert all('bbox_mAP' in r['metrics'] for r in records.values())
    for method, (_, logged_loss) in METHODS.items():
        with open(tmp_path / f'{method}.log') as f:
            assert logged_loss in f.read(), method
