"""Record decoder attention through forward hooks on module instances.

This recorder is the package's one use of forward hooks, and it only
observes: it reads inputs and never changes what a module returns. No mmdet
class is changed: hooks are registered on the instances of one model for the
duration of a ``with`` block and removed afterwards, so the same classes used
elsewhere (and the exported student) behave exactly as in mmdet.

What it keeps per layer is an :class:`~.attention_records.AttentionRecord`, not a
map: what any rows of the head-averaged map need (weights the module
computes anyway, queries and keys, or sampling points; :mod:`.attention_maps` reads
them from the hook's inputs), so that the losses form only the rows, and
blocks, of the queries they keep, once the pairs are known.

A record is kept per layer and module call, as the module saw the call: a
layer whose self-attention runs its query groups in several calls
(:mod:`.folded_self_attention`: a lead, folded groups, a tail) has several
records, in call order, the folded one in its folded layout, (bs * G, n, n);
:func:`.group_attention_blocks.group_blocks` finds each group's block among them.
"""

from typing import Callable, Dict, List, Sequence

from mmcv.cnn.bricks.transformer import MultiheadAttention
from mmcv.ops import MultiScaleDeformableAttention
from mmdet.models.layers.transformer.utils import ConditionalAttention
from torch import nn

from .attention_records import (
    AttentionRecord,
    AttentionWeights,
    SamplingDensity,
    multihead_record,
)


class AttentionRecorder:
    """Collect records of the head-averaged attention maps of several attention modules.

    Use as a context manager::

        with AttentionRecorder({'self': [...], 'cross': [...]}) as rec:
            model(...)
        rec.records['self'][layer]  # records of the layer's calls, in call order
        rec.record('self', layer)  # the one record of a layer called once, standing
                                   # for the map (bs, num_queries, num_keys)
        rec.record('self', layer).rows(idx, idx)  # (bs, K, K) among queries idx (bs, K)

    Args:
        modules (dict[str, Sequence[nn.Module]]): For each kind of attention
            (e.g. ``'self'``, ``'cross'``), the attention modules of the decoder
            layers, in layer order: ``ConditionalAttention``, mmcv
            ``MultiheadAttention`` or ``MultiScaleDeformableAttention``.
    """

    def __init__(self, modules: Dict[str, Sequence[nn.Module]]) -> None:
        self.modules = modules
        self.records: Dict[str, List[List[AttentionRecord]]] = {}
        self._handles: list = []

    def __enter__(self) -> 'AttentionRecorder':
        self.records = {kind: [[] for _ in mods] for kind, mods in self.modules.items()}
        for kind, mods in self.modules.items():
            for layer, attn in enumerate(mods):
                self._handles.append(self._hook(attn, self._sink(kind, layer)))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def record(self, kind: str, layer: int) -> AttentionRecord:
        """The record of a layer whose module of ``kind`` ran once.

        Raises:
            ValueError: It ran another number of times (see :attr:`records`).
        """
        calls = self.records[kind][layer]
        if len(calls) != 1:
            raise ValueError(f'{kind} attention of layer {layer} ran {len(calls)} times, not once')
        return calls[0]

    def _sink(self, kind: str, layer: int) -> Callable[[AttentionRecord], None]:
        return self.records[kind][layer].append

    @staticmethod
    def _hook(attn: nn.Module, store: Callable[[AttentionRecord], None]):
        if isinstance(attn, ConditionalAttention):
            heads = attn.num_heads
            return attn.attn_drop.register_forward_pre_hook(
                lambda mod, args: store(AttentionWeights.of_heads(args[0], heads))
            )
        if isinstance(attn, MultiheadAttention):
            return attn.attn.register_forward_hook(
                lambda mod, args, kwargs, out: store(multihead_record(mod, args, kwargs, out)),
                with_kwargs=True,
            )
        if isinstance(attn, MultiScaleDeformableAttention):
            return attn.register_forward_hook(
                lambda mod, args, kwargs, out: store(SamplingDensity.of_call(mod, kwargs)),
                with_kwargs=True,
            )
        raise TypeError(f'cannot record attention maps of {type(attn).__name__}')
