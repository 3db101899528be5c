"""Checkpoint paths as users write them."""

import os.path as osp
from typing import Optional


def expand_user_path(path: Optional[str]) -> Optional[str]:
    """``~`` and ``~user`` expanded in a local path, as mmengine does for ``load_from``.

    URLs and storage-backend paths (anything with ``://``) and None are returned unchanged.
    """
    if path is None or '://' in str(path):
        return path
    return osp.expanduser(str(path))
