"""Safe ``http(s)://`` checkpoint loads for mmengine's ``CheckpointLoader``.

mmengine 0.10.7 registers ``load_from_http`` for ``('http://', 'https://')``; it reads the
file through ``torch.hub.load_state_dict_from_url``, i.e. ``torch.load(weights_only=False)``,
so a malicious checkpoint runs code. :func:`register_safe_url_loader` (called by
``import mmdet_detrdistill``) replaces that scheme with :func:`load_from_http_safely`, through
mmengine's documented ``CheckpointLoader.register_scheme(..., force=True)``. From then on every
URL given to ``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained', checkpoint=URL)``
or ``mmengine.runner.load_checkpoint`` is downloaded into this package's URL cache and loaded
with ``weights_only=True`` and the allow-list, like ``model.teacher_ckpt``.

mmengine's ``torchvision://``, ``open-mmlab://`` and ``mmcls://`` schemes call its
``load_from_http`` function directly, not through the registry, and are not covered.
"""

from typing import Any, Dict

from mmengine.runner.checkpoint import CheckpointLoader

from .checkpoint import MapLocation, read_checkpoint
from .remote_checkpoint import URL_PREFIXES


def load_from_http_safely(filename: str, map_location: MapLocation = None) -> Dict[str, Any]:
    """Load an ``http(s)://`` checkpoint safely; the ``CheckpointLoader`` scheme for URLs.

    Args:
        filename: The URL (downloaded once into the URL cache, rank 0 first).
        map_location: Passed to ``torch.load``, as mmengine's loader does.

    Returns:
        The checkpoint dict.

    Raises:
        FileNotFoundError: The download failed.
        UnsafeCheckpointError: The file needs non-allow-listed globals (it is not unpickled,
            and is deleted from the cache).
        ValueError: The file is corrupt or not a checkpoint dict (deleted from the cache).
    """
    return read_checkpoint(filename, role='pretrained', map_location=map_location)


def register_safe_url_loader() -> None:
    """Make mmengine load ``http://`` / ``https://`` checkpoints with :func:`load_from_http_safely`.

    Idempotent; process-wide (mmengine's ``CheckpointLoader`` is a class-level registry).
    """
    CheckpointLoader.register_scheme(URL_PREFIXES, load_from_http_safely, force=True)
