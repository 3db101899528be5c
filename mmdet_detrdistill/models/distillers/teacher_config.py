"""Resolve and check the teacher's model config."""

import os.path as osp
from typing import Union

from mmengine.config import Config, ConfigDict
from mmengine.utils import get_installed_path
from torch import nn


def resolve_config_path(path: str) -> str:
    """Turn ``'mmdet::dir/file.py'`` into a file path; check that it exists."""
    if '::' in path:
        package, rel = path.split('::', 1)
        try:
            root = get_installed_path(package)
        except Exception as err:  # the package is not installed
            raise FileNotFoundError(
                f'teacher config {path!r}: package {package!r} is not installed'
            ) from err
        path = osp.join(root, '.mim', 'configs', rel)
    if not osp.isfile(path):
        raise FileNotFoundError(
            f'teacher config file not found: {path!r}. Set `model.teacher` to an existing '
            "config file ('mmdet::...' or a path) or to a model config dict."
        )
    return path


def load_teacher_model_cfg(teacher: Union[str, dict]) -> ConfigDict:
    """The teacher's model config from a config dict or a config file path.

    Args:
        teacher (str | dict): A model config (with ``type``), or the path of a
            full config file (``'mmdet::...'`` or a file) whose ``model`` is used.
    """
    if isinstance(teacher, str):
        cfg = Config.fromfile(resolve_config_path(teacher))
        if 'model' not in cfg:
            raise KeyError(f'teacher config {teacher!r} has no `model` entry')
        return ConfigDict(cfg.model)
    if isinstance(teacher, dict) and 'type' in teacher:
        return ConfigDict(teacher)
    raise TypeError(
        'model.teacher must be a model config dict with a `type` key, or the path of a '
        f'config file; got {type(teacher).__name__}: {teacher!r:.200}'
    )


def check_same_preprocessing(student_dp: nn.Module, teacher_dp: nn.Module) -> None:
    """The teacher sees the student's preprocessed batch: both must normalise alike.

    Raises:
        ValueError: naming the differing setting, if mean/std/channel order differ.
    """
    for name in ('mean', 'std', '_channel_conversion', '_enable_normalize'):
        s, t = getattr(student_dp, name, None), getattr(teacher_dp, name, None)
        same = (s is None and t is None) or (
            s is not None
            and t is not None
            and bool((s == t).all() if hasattr(s, 'all') else s == t)
        )
        if not same:
            raise ValueError(
                f'teacher and student data_preprocessor differ in `{name.lstrip("_")}` '
                f'(student {s!r}, teacher {t!r}). The teacher runs on the batch the student '
                "preprocessed: give the teacher config the student's data_preprocessor."
            )


def teacher_num_classes_key(teacher: Union[str, dict]) -> str:
    """The config key that sets the teacher's class count, as a user would edit it."""
    if isinstance(teacher, str):
        return f'model.bbox_head.num_classes of the teacher config {teacher!r}'
    return 'model.teacher.bbox_head.num_classes'


def check_same_classes(
    student: nn.Module, teacher: nn.Module, teacher_cfg: Union[str, dict]
) -> None:
    """Teacher and student must predict the same classes (logits are distilled class by class).

    Raises:
        ValueError: naming both class counts and the two config keys, if they differ.
    """
    s, t = student.bbox_head.num_classes, teacher.bbox_head.num_classes
    if s != t:
        raise ValueError(
            f'the teacher predicts {t} classes ({teacher_num_classes_key(teacher_cfg)} = {t}) '
            f'but the student {s} (model.student.bbox_head.num_classes = {s}). Distillation '
            'compares class scores class by class: use a teacher trained on the same classes '
            '(fine-tune it on your dataset first, see docs/own_dataset.md) and set both to '
            'the number of classes of the dataset.'
        )
