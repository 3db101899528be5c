"""Image sizes as box scales: normalised boxes to pixels and back."""

from typing import List, Sequence, Union

import torch
from mmdet.structures.bbox import bbox_cxcywh_to_xyxy, bbox_xyxy_to_cxcywh
from mmengine.structures import InstanceData
from torch import Tensor


def pixel_scale(like: Union[Tensor, torch.device], img_metas: Sequence[dict]) -> Tensor:
    """Each image's ``(w, h, w, h)`` from its ``img_shape``, (bs, 1, 4) fp32.

    Multiply normalised boxes (bs, N, 4) by it to get pixels.

    Args:
        like (Tensor | torch.device): The result goes on this tensor's device
            (or this device).
        img_metas (Sequence[dict]): Image metas with ``img_shape`` (h, w, ...).

    Returns:
        Tensor: (bs, 1, 4) float32.
    """
    device = like.device if isinstance(like, Tensor) else like
    sizes = [(w, h, w, h) for h, w in (m['img_shape'][:2] for m in img_metas)]
    return torch.tensor(sizes, dtype=torch.float32, device=device).reshape(-1, 1, 4)


def clamp_to_image(boxes: Tensor) -> Tensor:
    """Normalised cxcywh boxes cut to their image, still normalised cxcywh.

    The corners are clamped to the image::

        x1, y1, x2, y2 = clamp(cxcywh_to_xyxy(boxes), 0, 1)
        out = xyxy_to_cxcywh(x1, y1, x2, y2)

    which is clamping pixel xyxy boxes to ``[0, w] x [0, h]`` (the image's
    ``img_shape``, by which the boxes are normalised) and normalising back.

    Args:
        boxes (Tensor): (..., 4) normalised cxcywh.

    Returns:
        Tensor: (..., 4) normalised cxcywh, every corner inside [0, 1].
    """
    return bbox_xyxy_to_cxcywh(bbox_cxcywh_to_xyxy(boxes).clamp(0, 1))


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
