"""MMDetection plugin for knowledge distillation of DETR-family detectors.

Importing this package registers its distillers, query-group detectors, matchers and losses in
MMDetection's registries.

Side effect on every ``torch.load`` in the process: the import also calls
:func:`~mmdet_detrdistill.utils.checkpoint.register_mmengine_safe_globals`, which adds to
torch's process-wide ``weights_only`` allow-list (``torch.serialization.add_safe_globals``)
exactly the types MMEngine writes into a Runner checkpoint beyond torch's defaults (tensors,
builtins, ``OrderedDict``, ``Counter``):

* ``numpy.ndarray``, ``numpy.dtype`` and numpy's array/scalar rebuild functions
  (``numpy.core.multiarray._reconstruct`` / ``scalar`` under both the numpy 1.x and 2.x names),
  with the dtype classes of bool, int8-64, uint8-64 and float16/32/64 only (no object, complex
  or long double arrays): ``message_hub`` log buffers and the numpy scalars metrics return;
* ``mmengine.logging.HistoryBuffer`` (the ``message_hub`` log scalars), and ``builtins.getattr``
  served by a stand-in that allows only ``getattr(HistoryBuffer, 'min' | 'max' | 'current' |
  'mean')``, how a HistoryBuffer pickles its statistics.

Why: since torch 2.6 ``torch.load`` defaults to ``weights_only=True``, and MMEngine 0.10.7's
``load_from`` / ``resume`` call ``torch.load`` without ``weights_only``, so without these
entries torch refuses MMEngine's own checkpoints (the alternative, ``weights_only=False``,
would let a checkpoint run code). Nothing else is allow-listed and nothing is monkey-patched.

To see it: after the import, ``torch.serialization.get_safe_globals()`` lists these entries
(next to torch's own, such as ``DTensor``);
``torch.serialization.get_unsafe_globals_in_checkpoint(PATH)`` shows what a file still needs.

Side effect on mmengine's checkpoint loading of URLs: the import also calls
:func:`~mmdet_detrdistill.utils.url_loader.register_safe_url_loader`, which registers this
package's safe loaders in ``mmengine.runner.CheckpointLoader`` (``register_scheme(...,
force=True)``, mmengine's documented API) for ``http://`` / ``https://`` and for mmengine's
model-zoo schemes ``torchvision://`` / ``modelzoo://``, ``open-mmlab://`` / ``openmmlab://``
and ``mmcls://``, replacing mmengine's loaders, whose downloads all go through its
``load_from_http`` (``torch.load(weights_only=False)``). A model-zoo name is resolved to its
URL exactly as mmengine does (its ``get_torchvision_models`` / ``get_external_models`` /
``get_mmcls_models`` tables, deprecated names and warnings; without torchvision installed,
``torchvision://`` names come from mmengine's bundled ``hub/torchvision_0.12.json``); an unknown
name is an ``UnknownModelNameError`` naming the scheme, the name and the table. So
``load_from``, ``resume``, ``init_cfg=dict(type='Pretrained', checkpoint=URL or
'torchvision://resnet50')`` and ``mmengine.runner.load_checkpoint`` download URLs into this
package's cache (keyed by the whole URL, with a download timeout; see
:mod:`mmdet_detrdistill.utils.remote_checkpoint`) and load them like ``model.teacher_ckpt``:
``weights_only=True`` with the allow-list above; a file that fails to load is deleted from the
cache. An ``open-mmlab://`` entry that is a file under ``$MMENGINE_HOME`` is loaded by the same
safe local loader. ``CheckpointLoader._schemes`` shows the registered loaders.
"""

from .utils.checkpoint import register_mmengine_safe_globals
from .utils.url_loader import register_safe_url_loader
from .version import __version__

register_mmengine_safe_globals()
register_safe_url_loader()

from . import engine, models  # noqa: E402,F401  (registers into mmdet's registries)

__all__ = ['__version__']
