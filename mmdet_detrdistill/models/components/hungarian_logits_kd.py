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
    losses (add them with ``losses=dict(loss_self_attn=...)``).

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'detrdistill.logits'``.
        matcher, losses: see :class:`AdaptiveMatchKD`.
    """

    default_losses = PREDICTION_LOSSES

    def __init__(self, prefix: str = 'detrdistill.logits', **kwargs) -> None:
        super().__init__(prefix=prefix, **kwargs)
