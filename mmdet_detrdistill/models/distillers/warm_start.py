"""``load_from`` a plain student checkpoint: a distiller recognises it and prefixes its keys.

A distiller's ``state_dict()`` keys are ``student.*`` (OD-DETR adds ``ema_teacher.*``); a
checkpoint of the student detector trained alone (mmdet's habit for warm-starting) has the
same keys without the prefix. MMEngine would load nothing from it and only log "missing keys".
A student's own ``init_cfg=dict(type='Pretrained', ...)`` is honoured too
(:func:`reapply_pretrained`).
"""

from typing import Dict, Sequence, Tuple

from mmengine.logging import print_log
from mmengine.model import initialize
from torch import Tensor, nn

from ...utils.checkpoint import CheckpointMismatchError


def _listing(keys: Sequence[str], limit: int = 4) -> str:
    more = f', ... ({len(keys)} in all)' if len(keys) > limit else ''
    return ', '.join(keys[:limit]) + more


def remap_plain_student_state(
    distiller: nn.Module, state_dict: Dict[str, Tensor], prefix: str, targets: Sequence[str]
) -> None:
    """Rewrite, in place, a plain student state dict into the distiller's keys.

    Called at the start of the distiller's ``_load_from_state_dict`` (MMEngine's
    ``load_state_dict`` and torch's then hand the rewritten keys to the submodules):

    * keys of the distiller's own submodules (``student.*``, ...): left alone (a distiller
      checkpoint, e.g. ``--resume``);
    * else keys that name student tensors: each ``k`` becomes ``<target>k`` for every
      prefix in ``targets`` (e.g. ``'student.'``), other keys under the later targets'
      modules keep their current values (OD-DETR's ``ema_teacher.steps``), and the number
      of student tensors loaded (same name and shape) is logged;
    * else nothing would load: an error.

    Args:
        distiller: The distiller being loaded.
        state_dict: The state dict being loaded (rewritten in place).
        prefix: The distiller's key prefix in ``state_dict`` (``''`` at the top).
        targets: Key prefixes to copy a plain student tensor to, ``'student.'`` first.

    Raises:
        CheckpointMismatchError: The keys are neither the distiller's nor the student's.
    """
    keys = [k[len(prefix) :] for k in state_dict if k.startswith(prefix)]
    own = set(distiller._modules) | set(distiller._parameters) | set(distiller._buffers)
    if not keys or any(k.split('.', 1)[0] in own for k in keys):
        return
    student = distiller.student.state_dict()
    named = [k for k in keys if k in student]
    if not named:
        raise CheckpointMismatchError(
            f'the checkpoint loaded into {type(distiller).__name__} (load_from, init_cfg or '
            f'load_checkpoint) has neither its keys (student.*) nor those of its student '
            f'(e.g. {_listing(list(student))}); its keys are {_listing(keys)}. Nothing was '
            'loaded. Give a checkpoint of this distiller or of the student detector '
            '(model.student) alone.'
        )
    for key in keys:
        value = state_dict.pop(prefix + key)
        for target in targets:
            state_dict[prefix + target + key] = value
    current = distiller.state_dict()
    for root in {t.split('.', 1)[0] + '.' for t in targets[1:]}:  # e.g. ema_teacher.steps
        for key, value in current.items():
            if key.startswith(root) and prefix + key not in state_dict:
                state_dict[prefix + key] = value
    loaded = [k for k in named if state_dict[prefix + targets[0] + k].shape == student[k].shape]
    share, params, num_params = loaded_parameter_share(
        distiller.student, state_dict, prefix + targets[0]
    )
    print_log(
        f'Warm start from a plain student checkpoint (keys without "student."): '
        f'{len(loaded)} of the {len(student)} student tensors loaded into '
        f'{", ".join(t.rstrip(".") for t in targets)} ({params} of {num_params} parameter '
        f'tensors, {share:.1%} of the parameters); {len(keys) - len(loaded)} checkpoint '
        'keys unused (listed below as unexpected keys or size mismatches, if any).',
        logger='current',
    )


#: The share of the student's parameter elements a ``load_from`` must fill. A whole backbone
#: is 36% (Conditional DETR R18) to 59% (Deformable DETR R50) of mmdet's DETRs; the
#: ``num_batches_tracked`` buffers an unrelated detector shares with them are none.
MIN_WARM_START_SHARE = 0.25


def loaded_parameter_share(
    student: nn.Module, state_dict: Dict[str, Tensor], prefix: str
) -> Tuple[float, int, int]:
    """How much of ``student`` a load of ``state_dict`` fills: parameters only, not buffers.

    A parameter counts when ``state_dict`` holds ``prefix + name`` with its shape.

    Returns:
        tuple[float, int, int]: The share of parameter elements, and the loaded and total
        number of parameter tensors.
    """
    loaded_numel = total_numel = loaded = total = 0
    for name, param in student.named_parameters():
        total, total_numel = total + 1, total_numel + param.numel()
        value = state_dict.get(prefix + name)
        if value is not None and tuple(value.shape) == tuple(param.shape):
            loaded, loaded_numel = loaded + 1, loaded_numel + param.numel()
    return loaded_numel / max(total_numel, 1), loaded, total


def check_warm_start_share(
    distiller: nn.Module, state_dict: Dict[str, Tensor], prefix: str
) -> None:
    """Refuse a checkpoint that would fill less than :data:`MIN_WARM_START_SHARE` of the student.

    Called by the distiller's ``_load_from_state_dict`` after
    :func:`remap_plain_student_state`, so the keys are the distiller's (``student.*``).
    mmengine loads ``load_from`` non-strictly and trains on whatever matched: a Faster R-CNN
    checkpoint given to a DETR student shares only BatchNorm counters with it.

    Raises:
        CheckpointMismatchError: Naming the share, the counts and what to do.
    """
    share, loaded, total = loaded_parameter_share(
        distiller.student, state_dict, f'{prefix}student.'
    )
    if share >= MIN_WARM_START_SHARE:
        return
    raise CheckpointMismatchError(
        f'the checkpoint loaded into {type(distiller).__name__} (load_from, init_cfg or '
        f"load_checkpoint) fills {share:.1%} of the student's parameters ({loaded} of its "
        f'{total} parameter tensors with the same name and shape; buffers such as BatchNorm '
        f'counters are not counted), less than the {MIN_WARM_START_SHARE:.0%} (about a whole '
        'backbone) a warm start needs: training would start from a mostly random student. '
        'Nothing was loaded. Give a checkpoint of the student architecture (model.student) '
        "or of this distiller; to load only a part (e.g. a backbone), use the student's "
        "init_cfg=dict(type='Pretrained', checkpoint=..., prefix='backbone.') instead."
    )


def reapply_pretrained(student: nn.Module) -> None:
    """Load the student's ``init_cfg=dict(type='Pretrained', ...)`` (if any) again.

    mmdet's DETRs load a ``Pretrained`` ``init_cfg`` in ``BaseModule.init_weights`` and then
    re-initialise their encoder and decoder (``DETR.init_weights``,
    ``DeformableDETR.init_weights``): only the backbone and head would keep the checkpoint's
    weights. Call after the student's ``init_weights``.
    """
    init_cfgs = student.init_cfg or []
    init_cfgs = init_cfgs if isinstance(init_cfgs, list) else [init_cfgs]
    pretrained = [c for c in init_cfgs if c.get('type') == 'Pretrained']
    if pretrained:
        initialize(student, pretrained)
