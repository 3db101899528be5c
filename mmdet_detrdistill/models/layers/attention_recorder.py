"""Record decoder attention maps through forward hooks on module instances.

This recorder is the package's one use of forward hooks, and it only
observes: it reads inputs and never changes what a module returns. No mmdet
class is changed: hooks are registered on the instances of one model for the
duration of a ``with`` block and removed afterwards, so the same classes used
elsewhere (and the exported student) behave exactly as in mmdet. How each kind
of attention yields its map: see :mod:`.attention_maps`.

A map is kept per layer and module call as the module saw it: self-attention
run folded by query group (:mod:`.folded_self_attention`) is recorded in its
folded layout, (bs * G, n, n); ``DETRDistillerBase.decoder_outputs`` views it
as (bs, G, n, n).
"""

from typing import Callable, Dict, List, Sequence

from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.layers.transformer.utils import ConditionalAttention
from torch import Tensor, nn

from .attention_maps import (
    conditional_attention_map,
    deformable_attention_map,
    multihead_attention_map,
)


class AttentionRecorder:
    """Collect head-averaged attention maps of several attention modules.

    Use as a context manager::

        with AttentionRecorder({'self': [...], 'cross': [...]}) as rec:
            model(...)
        rec.maps['self'][layer]  # (bs, num_queries, num_keys)

    Args:
        modules (dict[str, Sequence[nn.Module]]): For each kind of attention
            (e.g. ``'self'``, ``'cross'``), the attention modules of the decoder
            layers, in layer order: ``ConditionalAttention``, mmcv
            ``MultiheadAttention`` or ``MultiScaleDeformableAttention``.
    """

    def __init__(self, modules: Dict[str, Sequence[nn.Module]]) -> None:
        self.modules = modules
        self.maps: Dict[str, List[Tensor]] = {}
        self._handles: list = []

    def __enter__(self) -> 'AttentionRecorder':
        self.maps = {kind: [None] * len(mods) for kind, mods in self.modules.items()}
        for kind, mods in self.modules.items():
            for layer, attn in enumerate(mods):
                self._handles.append(self._hook(attn, self._sink(kind, layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _sink(self, kind: str, layer: int) -> Callable[[Tensor], None]:
        def store(attn_map: Tensor) -> None:
            self.maps[kind][layer] = attn_map

        return store

    @staticmethod
    def _hook(attn: nn.Module, store: Callable[[Tensor], None]):
        if isinstance(attn, ConditionalAttention):
            heads = attn.num_heads
            return attn.attn_drop.register_forward_pre_hook(
                lambda mod, args: store(conditional_attention_map(args[0], heads))
            )
        if isinstance(attn, MultiheadAttention):
            return attn.attn.register_forward_hook(
                lambda mod, args, kwargs, out: store(multihead_attention_map(mod, args, kwargs)),
                with_kwargs=True,
            )
        if isinstance(attn, MultiScaleDeformableAttention):
            return attn.register_forward_hook(
                lambda mod, args, kwargs, out: store(deformable_attention_map(mod, kwargs)),
                with_kwargs=True,
            )
        raise TypeError(f'cannot record attention maps of {type(attn).__name__}')
