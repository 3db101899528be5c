"""MMDetection's published models, as its ``metafile.yml`` files list them."""

import os.path as osp
from typing import Dict

import yaml

from .tiny_models import mmdet_config_path


def metafile_entry(config: str) -> Dict:
    """The ``Models`` entry of mmdet's ``metafile.yml`` whose ``Config`` is ``config``.

    Args:
        config (str): One of mmdet's configs, ``'mmdet::family/name.py'`` or ``'family/name.py'``.

    Returns:
        The entry (``Name``, ``Config``, ``Results``, ``Weights``, ...).
    """
    rel = config.split('::', 1)[-1]
    with open(mmdet_config_path(osp.join(osp.dirname(rel), 'metafile.yml'))) as f:
        models = yaml.safe_load(f)['Models']
    found = [m for m in models if m['Config'] == f'configs/{rel}']
    if len(found) != 1:
        raise KeyError(f'{rel!r} is listed {len(found)} times in its family metafile.yml')
    return found[0]
