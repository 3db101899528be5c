"""Record decoder attention maps through forward hooks on module instances.

No mmdet class is changed: hooks are registered on the instances of one model
for the duration of a ``with`` block and removed afterwards, so the same
classes used elsewhere (and the exported student) behave exactly as in mmdet.

Conditional DETR and DAB-DETR compute attention in ``ConditionalAttention``,
which returns only the attended values; its softmax weights, shape
(bs * num_heads, num_queries, num_keys), are the *input* of its ``attn_drop``
module. A forward pre-hook there captures them before dropout (a student in
train mode would otherwise see dropped-out maps).
"""
from typing import Dict, List, Sequence

from torch import Tensor, nn


class AttentionRecorder:
    """Collect head-averaged attention maps of several attention modules.

    Use as a context manager::

        with AttentionRecorder({'self': [...], 'cross': [...]}) as rec:
            model(...)
        rec.maps['self'][layer]  # (bs, num_queries, num_keys)

    Args:
        modules (dict[str, Sequence[nn.Module]]): For each kind of attention
            (e.g. ``'self'``, ``'cross'``), the ``ConditionalAttention``
            modules of the decoder layers, in layer order.
    """

    def __init__(self, modules: Dict[str, Sequence[nn.Module]]) -> None:
        self.modules = modules
        self.maps: Dict[str, List[Tensor]] = {}
        self._handles: list = []

    def __enter__(self) -> 'AttentionRecorder':
        self.maps = {kind: [None] * len(mods) for kind, mods in self.modules.items()}
        for kind, mods in self.modules.items():
            for layer, attn in enumerate(mods):
                hook = self._make_hook(kind, layer, attn.num_heads)
                self._handles.append(attn.attn_drop.register_forward_pre_hook(hook))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _make_hook(self, kind: str, layer: int, num_heads: int):
        def hook(module: nn.Module, args: tuple) -> None:
            weights = args[0]  # (bs * num_heads, num_queries, num_keys)
            n, q, k = weights.shape
            # average over heads: teacher and student may differ in head count
            self.maps[kind][layer] = weights.view(n // num_heads, num_heads, q, k).mean(1)

        return hook
