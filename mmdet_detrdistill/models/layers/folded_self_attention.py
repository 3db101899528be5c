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

Works on any attention module that takes batch-first ``(bs, num_queries, dim)``
tensors by keyword and returns one tensor of that shape: mmdet's
``ConditionalAttention`` (Conditional DETR, DAB-DETR) and mmcv's
``MultiheadAttention`` with ``batch_first=True`` (Deformable DETR).
"""

from typing import Any, Dict, Sequence, Tuple

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

    Args:
        modules (Sequence[nn.Module]): Self-attention modules of the decoder.
        num_groups (int): Number of equal-size groups on the query axis.
    """

    def __init__(self, modules: Sequence[nn.Module], num_groups: int) -> None:
        unsupported = [type(m).__name__ for m in modules if not can_fold(m)]
        if unsupported:
            raise ValueError(f'cannot fold query groups in non-batch-first {unsupported}')
        self.modules = list(modules)
        self.num_groups = num_groups
        self._handles: list = []

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
    ) -> Tuple[Tuple, Dict[str, Any]]:
        if args:
            raise TypeError(
                f'{type(module).__name__} was called with positional inputs; folding '
                'needs them by keyword'
            )
        if kwargs.get('attn_mask') is not None:
            raise ValueError('folded query groups need no self-attention mask; got one')
        folded = dict(kwargs)
        for name in FOLDED_INPUTS:
            if isinstance(kwargs.get(name), Tensor):
                folded[name] = fold_groups(kwargs[name], self.num_groups)
        return args, folded

    def _unfold(self, module: nn.Module, args: Tuple, output: Tensor) -> Tensor:
        return unfold_groups(output, self.num_groups)
