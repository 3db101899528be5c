"""The embedded default runs D3ETR end to end for every family (``--quick``).

Conditional DETR, the default family, is run by .ci/run itself."""

import json
import os.path as osp
import subprocess
import sys

import pytest

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))


@pytest.mark.parametrize('family', ['dab', 'deformable'])
def test_quick_demo_runs_each_family(family, tmp_path):
    cmd = [
        sys.executable,
        osp.join(ROOT, 'tools', 'run_demo.py'),
        '--quick',
        '--family',
        family,
        '--work-dir',
        str(tmp_path),
        '--data-root',
        str(tmp_path / 'data'),
    ]
    run = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert '| D3ETR student |' in run.stdout
    with open(tmp_path / 'results.json') as f:
        records = json.load(f)
    assert set(records) == {'teacher', 'baseline student', 'D3ETR student'}
    assert all('bbox_mAP' in r['metrics'] for r in records.values())
    with open(tmp_path / 'distilled.log') as f:
        assert 'd3etr.fixed.d1.loss_cross_attn' in f.read()
