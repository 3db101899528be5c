"""DETRDistill (arXiv 2211.10156), Sec. 3.2: progressive Hungarian-matching logits distillation."""

from mmdet.registry import MODELS

from .adaptive_match_kd import AdaptiveMatchKD
from .pair_losses import PREDICTION_LOSSES


@MODELS.register_module()
class HungarianLogitsKD(AdaptiveMatchKD):
    """DETRDistill, Sec. 3.2: layer-by-layer Hungarian logits distillation.

    The teacher's layer-l predictions (all queries, no score threshold,
    sigmoid scores as soft labels) are pseudo ground truth for the student's
    layer l, matched on soft-label BCE 1 + L1 5 (cxcywh) + GIoU 2; losses
    soft-label BCE 1 + L1 5 + GIoU 2 averaged over matched pairs, in every
    decoder layer. This is :class:`AdaptiveMatchKD` without the attention
    losses (add them with ``losses=dict(loss_self_attn=...)``), with the
    teacher's boxes cut to the image, for the matching and the losses alike:
    the official code makes its pseudo ground truth so
    (``DistillDeformableDETRHead._get_teacher_bboxes_distill_single`` in
    BIVLab-USTC/DETRDistill ``deformdetr_project/mmdet/models/dense_heads/
    distill_deformable_detr_head.py``: cxcywh to pixel xyxy, x clamped to
    [0, w] and y to [0, h] of ``img_shape``; its targets are those boxes
    normalised back to cxcywh).

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'detrdistill.logits'``.
        clamp_teacher_boxes (bool): See :class:`AdaptiveMatchKD`. Defaults
            to True (the official code).
        matcher, losses: see :class:`AdaptiveMatchKD`.
    """

    default_losses = PREDICTION_LOSSES

    def __init__(
        self, prefix: str = 'detrdistill.logits', clamp_teacher_boxes: bool = True, **kwargs
    ) -> None:
        super().__init__(prefix=prefix, clamp_teacher_boxes=clamp_teacher_boxes, **kwargs)
