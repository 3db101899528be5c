"""Download checkpoint URLs into this package's URL cache, checked by the safe loader.

    python tools/model_converters/fetch_checkpoint.py URL [URL ...]

Pre-fills the cache, e.g. on a machine with network access before an offline run: each file
lands in ``<torch.hub.get_dir()>/checkpoints/<sha256(URL)[:16]>-<file name>`` (under
``$TORCH_HOME``) after the safe loader (``weights_only=True`` and an allow-list) has read it; a
file that fails to load is deleted from the cache. Copy that directory to the offline machine.

It is not needed for safety: once ``mmdet_detrdistill`` is imported (``custom_imports`` in the
config), ``load_from=URL``, ``init_cfg=dict(type='Pretrained', checkpoint=URL)`` and
``model.teacher_ckpt=URL`` all go through the same safe loader and cache. Downloads time out
after ``$MMDET_DETRDISTILL_DOWNLOAD_TIMEOUT`` seconds without data (default 60).
"""

import argparse
import sys
from typing import List, Optional


def main(argv: Optional[List[str]] = None) -> int:
    """Fetch and check each URL; return the process exit code (1 if any failed)."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('urls', nargs='+', help='checkpoint URLs (http:// or https://)')
    args = parser.parse_args(argv)
    from mmdet_detrdistill.utils.checkpoint import read_checkpoint
    from mmdet_detrdistill.utils.remote_checkpoint import is_url, url_cache_path

    status = 0
    for url in args.urls:
        if not is_url(url):
            print(f'error: {url!r} is not an http(s) URL', file=sys.stderr)
            status = 1
            continue
        try:
            read_checkpoint(url, role='teacher')
        except (FileNotFoundError, ValueError) as err:
            print(f'error: {err}', file=sys.stderr)
            status = 1
            continue
        print(f'{url}\n  -> {url_cache_path(url)} (loads with weights_only=True)')
    return status


if __name__ == '__main__':
    sys.exit(main())
