"""Give a DETR head another assigner, and predictions in the layout assigners take."""

from contextlib import contextmanager
from typing import Iterator, List

from mmdet.models.task_modules import BaseAssigner
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from torch import Tensor, nn

from ..common import pixel_scale


@contextmanager
def assigner_swapped(head: nn.Module, assigner: BaseAssigner) -> Iterator[None]:
    """Use ``assigner`` as ``head.assigner`` (this head instance only) inside the block.

    mmdet's DETR heads call ``self.assigner.assign(pred_instances,
    gt_instances, img_meta)`` in ``_get_targets_single``: swapping the
    instance's assigner is the documented way to change the assignment and
    keep the head's targets and losses.
    """
    original = head.assigner
    head.assigner = assigner
    try:
        yield
    finally:
        head.assigner = original


def pred_instances(logits: Tensor, boxes: Tensor, img_metas: List[dict]) -> List[InstanceData]:
    """Per-image predictions in the layout DETR heads give assigners.

    Args:
        logits (Tensor): Class logits, (bs, N, C).
        boxes (Tensor): Normalised cxcywh boxes, (bs, N, 4).
        img_metas (list[dict]): Image metas with ``img_shape``.

    Returns:
        list[InstanceData]: ``scores`` (N, C) logits, ``bboxes`` (N, 4) pixel xyxy.
    """
    pixel = bbox_cxcywh_to_xyxy(boxes) * pixel_scale(boxes, img_metas).to(boxes.dtype)
    return [InstanceData(scores=s, bboxes=b) for s, b in zip(logits, pixel)]
