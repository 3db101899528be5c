"""Each method folder lists its configs in a metafile.yml, as mmdet's config folders do."""

import glob
import os.path as osp

import pytest
import yaml

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
METHODS = ('d3etr', 'detrdistill', 'oddetr')


@pytest.mark.parametrize('method', METHODS)
def test_metafile_lists_exactly_the_configs_of_its_folder(method):
    folder = osp.join(ROOT, 'configs', method)
    with open(osp.join(folder, 'metafile.yml')) as f:
        meta = yaml.safe_load(f)
    (collection,) = meta['Collections']
    assert osp.isfile(osp.join(ROOT, collection['README']))
    listed = [m['Config'] for m in meta['Models']]
    on_disk = sorted(osp.relpath(p, ROOT) for p in glob.glob(osp.join(folder, '*.py')))
    assert sorted(listed) == on_disk
    for model in meta['Models']:
        assert model['In Collection'] == collection['Name']
        assert model['Name'] == osp.splitext(osp.basename(model['Config']))[0]
