"""How often a GT box changes its matched query from one decoder layer to the next.

This *layer-wise* quantity is not OD-DETR's / DN-DETR's matching instability (changes of an
image's final-layer assignment between epochs, :class:`MatchInstabilityHook`): OD-DETR's
blended-cost assignment adds the same last-layer teacher cost to every layer, which lowers it by
construction.
"""

from typing import List, Tuple

import torch
from mmdet.models.task_modules import AssignResult, BaseAssigner
from torch import Tensor


class RecordingAssigner(BaseAssigner):
    """Delegates to ``assigner`` and keeps every (num_gts, gt_inds) it returns, in call order.

    The distiller wraps the assigner of each (decoder layer, image) in its own
    recorder, so a record's layer and image are those of its recorder.
    """

    def __init__(self, assigner: BaseAssigner) -> None:
        self.assigner = assigner
        self.results: List[Tuple[int, Tensor]] = []

    def assign(self, *args, **kwargs) -> AssignResult:
        result = self.assigner.assign(*args, **kwargs)
        self.results.append((result.num_gts, result.gt_inds.detach()))
        return result


def layer_match_instability(
    results: List[Tuple[int, Tensor]], num_layers: int, batch_size: int
) -> Tensor:
    """Fraction of (GT, consecutive layer pair) whose matched query changes.

    Args:
        results (list[tuple[int, Tensor]]): (num_gts, gt_inds) layer by
            layer, image by image: ``results[layer * batch_size + b]`` (the
            first ``num_layers * batch_size`` are used); ``gt_inds[q] = j + 1``
            when query q is matched to GT j, 0 otherwise.
        num_layers (int): Decoder layers.
        batch_size (int): Images.

    Returns:
        Tensor: Scalar in [0, 1]; 0 when there is no GT or a single layer.
    """
    changed, total = 0, 0
    for b in range(batch_size):
        per_layer = [results[layer * batch_size + b] for layer in range(num_layers)]
        for before, after in zip(per_layer, per_layer[1:]):
            query_of_before = query_of_each_gt(*before)
            query_of_after = query_of_each_gt(*after)
            changed += int((query_of_before != query_of_after).sum())
            total += len(query_of_before)
    device = results[0][1].device if results else None
    return torch.tensor(changed / total if total else 0.0, device=device)


#: former name, kept importable
match_instability = layer_match_instability


def query_of_each_gt(num_gts: int, gt_inds: Tensor) -> Tensor:
    """Matched query index of each GT j (one-to-one matching), -1 if none."""
    out = torch.full((num_gts,), -1, dtype=torch.long, device=gt_inds.device)
    queries = torch.nonzero(gt_inds > 0).flatten()
    out[gt_inds[queries] - 1] = queries
    return out
