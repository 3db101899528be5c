"""Give a DETR head another assigner, and predictions in the layout assigners take."""

from contextlib import contextmanager
from typing import Iterator, List

import torch
from mmdet.models.task_modules import BaseAssigner
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy
from mmengine.structures import InstanceData
from torch import Tensor, nn


def pixel_scale(boxes: Tensor, img_metas: List[dict]) -> Tensor:
    """(w, h, w, h) of each image, (bs, 1, 4) fp32, to turn normalised boxes into pixels."""
    return torch.stack(
        [boxes.new_tensor([w, h, w, h]).float() for h, w in (m['img_shape'] for m in img_metas)]
    )[:, None]


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


class DecoderLayersAssigner:
    """``first`` for a head's first ``num_calls`` assignments, then ``then``.

    mmdet's DETR heads assign layer by layer, image by image, and only then
    (two-stage Deformable DETR) the encoder proposals: with ``num_calls =
    num_layers * batch_size``, a decoder-query assigner never sees proposals.
    """

    def __init__(self, first, num_calls: int, then) -> None:
        self.first, self.then, self.num_calls, self.calls = first, then, num_calls, 0

    def assign(self, *args, **kwargs):
        assigner = self.first if self.calls < self.num_calls else self.then
        self.calls += 1
        return assigner.assign(*args, **kwargs)
