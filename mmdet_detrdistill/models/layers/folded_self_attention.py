"""Self-attention of equal-size, isolated query groups, folded into the batch axis.

With G query groups of n queries each (none padded), the block-diagonal mask of
:mod:`.query_groups` lets every query attend to its own group only. That is
exactly self-attention run on each group alone, so for the self-attention call
the groups are moved from the query axis to the batch axis, and back after it::

    query axis (bs, G*n, dim):  [ own (n) | group 1 (n) | ... ]      image b
                                    | view (groups are contiguous: free)
                                    v
    batch axis (bs*G, n, dim):  row b*G + 0: own        (sees own only)
                                row b*G + 1: group 1    (sees group 1 only)
                                ...
                                    | self-attention, no mask
                                    v
                                view back to (bs, G*n, dim)

Rows of the folded batch never interact (attention is per batch row), so a
group still cannot see another one. What changes is the cost: no (G*n)^2
score matrix of which all but G blocks are masked; scores, softmax and their
dropout mask are G times smaller, and no mask is built. Cross-attention, FFN,
norms and heads work per query and are not touched.

Outputs equal the masked computation up to float rounding (tested); in train
mode the attention-dropout mask is drawn over the smaller score tensor, so its
random draws differ, with the same distribution.

Groups that cannot fold (another size, or padded per image, like OD-DETR's
auxiliary groups) may follow the equal ones as a *tail*: the tail runs in a
second call of the same module, under its own mask, and the two outputs are
concatenated. The folded head and the tail cannot see each other either (they
are separate calls)::

    query axis (bs, G*n + t, dim):  [ own | group 1 | tail (t, e.g. aux0 aux1 + padding) ]
                                      |_________|       |
                                      folded call        second call, tail mask (t x t)
                                      (bs*G, n, dim)     (bs, t, dim)

Works on any attention module that takes batch-first ``(bs, num_queries, dim)``
tensors by keyword and returns one tensor of that shape: mmdet's
``ConditionalAttention`` (Conditional DETR, DAB-DETR) and mmcv's
``MultiheadAttention`` with ``batch_first=True`` (Deformable DETR).
"""

from typing import Any, Dict, Optional, Sequence, Tuple

import torch
from torch import Tensor, nn

#: keyword inputs of the attention modules that are laid out (bs, num_queries, dim)
FOLDED_INPUTS = ('query', 'key', 'value', 'identity', 'query_pos', 'key_pos')


def can_fold(module: nn.Module) -> bool:
    """Whether ``module`` takes batch-first queries (the layout folding needs)."""
    return getattr(module, 'batch_first', True)  # ConditionalAttention has no flag: batch-first


def fold_groups(x: Tensor, num_groups: int) -> Tensor:
    """(bs, G*n, ...) -> (bs*G, n, ...): group g of image b becomes row b*G + g."""
    bs, total = x.shape[:2]
    if total % num_groups:
        raise ValueError(f'{total} queries cannot be folded into {num_groups} equal groups')
    return x.reshape(bs * num_groups, total // num_groups, *x.shape[2:])


def unfold_groups(x: Tensor, num_groups: int) -> Tensor:
    """(bs*G, n, ...) -> (bs, G*n, ...): the inverse of :func:`fold_groups`."""
    rows, n = x.shape[:2]
    return x.reshape(rows // num_groups, num_groups * n, *x.shape[2:])


class FoldedGroupSelfAttention:
    """Fold query groups into the batch axis inside self-attention modules.

    A context manager: forward hooks on the given module *instances* fold the
    query-axis inputs before each call and unfold the output after it, while
    the ``with`` block lasts; no class is changed. The decoder must be called
    without a self-attention mask (folding replaces it)::

        with FoldedGroupSelfAttention(model.decoder_attention_modules()['self'], 2):
            model.forward_decoder(...)  # queries (bs, 2n, dim), no self_attn_mask

    With ``tail_queries`` > 0 the last ``tail_queries`` queries are not
    folded: the forward hook runs the module on them once more, with
    ``tail_mask``, and appends that output. Hooks of other tools on the
    same module (e.g. an :class:`AttentionRecorder`) see both calls.

    Args:
        modules (Sequence[nn.Module]): Self-attention modules of the decoder.
        num_groups (int): Number of equal-size groups folded (the first
            ``num_queries - tail_queries`` queries).
        tail_queries (int): Number of queries after them that run unfolded.
            Defaults to 0.
        tail_mask (Tensor, optional): Self-attention mask of the tail, bool
            (t, t) or (bs * num_heads, t, t), ``True`` = masked. Defaults to
            None (the tail's queries all see each other).
    """

    def __init__(
        self,
        modules: Sequence[nn.Module],
        num_groups: int,
        tail_queries: int = 0,
        tail_mask: Optional[Tensor] = None,
    ) -> None:
        unsupported = [type(m).__name__ for m in modules if not can_fold(m)]
        if unsupported:
            raise ValueError(f'cannot fold query groups in non-batch-first {unsupported}')
        if tail_mask is not None and tail_mask.shape[-1] != tail_queries:
            raise ValueError(
                f'tail_mask covers {tail_mask.shape[-1]} queries, tail_queries is {tail_queries}'
            )
        self.modules = list(modules)
        self.num_groups = num_groups
        self.tail_queries = tail_queries
        self.tail_mask = tail_mask
        self._handles: list = []
        self._tail_kwargs: Optional[Dict[str, Any]] = None
        self._in_tail_call = False

    def __enter__(self) -> 'FoldedGroupSelfAttention':
        for module in self.modules:
            self._handles.append(module.register_forward_pre_hook(self._fold, with_kwargs=True))
            self._handles.append(module.register_forward_hook(self._unfold))
        return self

    def __exit__(self, *exc) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []

    def _fold(
        self, module: nn.Module, args: Tuple, kwargs: Dict[str, Any]
    ) -> Optional[Tuple[Tuple, Dict[str, Any]]]:
        if self._in_tail_call:
            return None  # the tail's own call: inputs as given
        if args:
            raise TypeError(
                f'{type(module).__name__} was called with positional inputs; folding '
                'needs them by keyword'
            )
        if kwargs.get('attn_mask') is not None:
            raise ValueError('folded query groups need no self-attention mask; got one')
        folded = dict(kwargs)
        tail = dict(kwargs, attn_mask=self.tail_mask)
        for name in FOLDED_INPUTS:
            x = kwargs.get(name)
            if isinstance(x, Tensor):
                head = x.shape[1] - self.tail_queries
                folded[name] = fold_groups(x[:, :head], self.num_groups)
                tail[name] = x[:, head:]
        self._tail_kwargs = tail if self.tail_queries else None
        return args, folded

    def _unfold(self, module: nn.Module, args: Tuple, output: Tensor) -> Optional[Tensor]:
        if self._in_tail_call:
            return None
        output = unfold_groups(output, self.num_groups)
        if self._tail_kwargs is None:
            return output
        tail_kwargs, self._tail_kwargs = self._tail_kwargs, None
        self._in_tail_call = True
        try:
            tail = module(**tail_kwargs)
        finally:
            self._in_tail_call = False
        return torch.cat([output, tail], dim=1)
