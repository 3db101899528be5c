"""tools/ imports shared code from the package, never from another script through sys.path."""

import glob
import os.path as osp

from mmdet_detrdistill.testing import REPO_ROOT


def test_no_tool_edits_sys_path():
    paths = [
        path
        for ext in ('py', 'sh')
        for path in glob.glob(osp.join(REPO_ROOT, 'tools', '**', f'*.{ext}'), recursive=True)
    ]
    assert len(paths) > 10  # the scripts are where this test looks
    edits = []
    for path in paths:
        with open(path) as f:
            text = f.read()
        edits += [
            f'{osp.relpath(path, REPO_ROOT)}: {call}'
            for call in ('sys.path.insert', 'sys.path.append')
            if call in text
        ]
    assert not edits, 'shared code belongs in mmdet_detrdistill/, not on sys.path: ' + str(edits)
