"""Say "export the student first" when mmdet's ``init_detector`` gets a distiller config.

``mmdet.apis.init_detector`` (mmdet 3.3) reads ``config.model.backbone`` before it builds a
model, to reset the backbone's ``init_cfg`` to None. A distiller's model dict has no backbone of
its own (the student's is in ``model.student``), so on a distiller config that line fails with
``AttributeError: 'ConfigDict' object has no attribute 'backbone'``, which says nothing about
what to do. The distiller configs of this repository therefore carry::

    backbone=dict(init_cfg='distiller'),

in their ``model`` dict. It is not a part of the model: a distiller built for training sees the
marker and ignores it; built by ``init_detector``, which has set that ``init_cfg`` to None, it
stops with :class:`DistillerForInferenceError`, which says to export the student.
"""

from typing import Any, Optional

#: ``init_cfg`` of the ``model.backbone`` marker of distiller configs
MARKER = 'distiller'


class DistillerForInferenceError(ValueError):
    """A distiller config was given to mmdet's inference API instead of the exported student."""


def check_not_for_inference(backbone: Optional[Any], distiller: str) -> None:
    """Refuse a distiller that ``init_detector`` is building (see the module docstring).

    Args:
        backbone: The distiller config's ``model.backbone`` (None when the config has none).
        distiller: The distiller's type, for the message.

    Raises:
        DistillerForInferenceError: ``backbone`` is the marker with its ``init_cfg`` reset.
        TypeError: ``backbone`` is anything else (it is not a model part of a distiller).
    """
    if backbone is None:
        return
    if not isinstance(backbone, dict) or set(backbone) != {'init_cfg'}:
        raise TypeError(
            f"model.backbone of a {distiller} config is only a marker for mmdet's init_detector "
            f"(dict(init_cfg='{MARKER}')); the student's backbone is model.student.backbone. "
            f'Got {backbone!r:.200}'
        )
    if backbone['init_cfg'] != MARKER:
        raise DistillerForInferenceError(
            f"this is a {distiller} config: a student and a teacher, for training. mmdet's "
            'init_detector / inference_detector need the student alone: export it first with '
            'python tools/model_converters/export_student.py CHECKPOINT student.pth, then call '
            "init_detector('student_config.py', 'student.pth'). (To evaluate the distiller's "
            'student without exporting, use tools/test.py CONFIG CHECKPOINT.)'
        )
