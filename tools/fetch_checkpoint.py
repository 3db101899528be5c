"""Download checkpoint URLs into the cache ``load_from`` uses, checked by the safe loader.

    python tools/fetch_checkpoint.py URL [URL ...]

mmengine's ``load_from`` (and ``init_cfg=dict(type='Pretrained', checkpoint=URL)``) reads
http(s) URLs through torch.hub, i.e. with ``torch.load(weights_only=False)``: a malicious file
would run code. Fetch a URL here first: the file lands in the same cache (torch.hub's
``checkpoints/``, under ``$TORCH_HOME``) after this package's safe loader (``weights_only=True``
and an allow-list) has read it; a refused file is deleted from the cache. ``model.teacher_ckpt``
URLs need no such step: they always go through the safe loader.
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
