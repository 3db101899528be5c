"""What the attention recorder keeps of one attention call, and rows of its map formed from it.

D3ETR's attention losses read, per decoder layer, the rows of the kept (matched) queries of
the head-averaged attention map ``A`` (B, nq, nk), and for self-attention only their K x K
block. The pairs are known only after both models ran, so a record keeps what any rows need,
and forms them when asked::

    record.rows(idx)        -> (bs, K, nk)   out[b, i, :] = A[b, idx[b, i], :]
    record.rows(idx, cols)  -> (bs, K, K')   out[b, i, j] = A[b, idx[b, i], cols[b, j]]

with ``A = mean_h P_h`` the head average of the per-head, pre-dropout softmax weights, each
row of ``P_h`` softmaxed over *all* keys. What a record keeps for the gradient is O(N) per
layer or what the module keeps anyway, never a new N x N map; until the loss, a record may also
hold the head average the module formed (below, 1/h of its per-head weights)::

* :class:`AttentionWeights` (``ConditionalAttention``): the per-head weights the module
  computed, (B, h, nq, nk). Autograd keeps them for the module's own backward, so referring
  to them costs nothing; without gradient (a teacher) their head average is kept instead,
  (B, 1, nq, nk): picking entries and averaging heads commute.
* ``nn.MultiheadAttention`` (:func:`multihead_record`): the head-averaged weights the module
  returns, (B, nq, nk), as :class:`AttentionWeights` with h = 1, where they are the pre-dropout
  softmax (attention dropout 0, as DINO's, or eval mode: every teacher). mmcv calls the module
  with ``need_weights``, so it forms them anyway: keeping them costs 1/h of the per-head
  weights autograd keeps for the module's own backward, and rows are picked, not recomputed.
  Otherwise (a training Deformable DETR, attention dropout 0.1: the weights it returns are
  after dropout) a :class:`QueryKeyProduct`: per-head queries and keys (B, h, n,
  d_h) and the masks. Rows are formed when asked: the K kept rows' scores over all keys,
  (bs, h, K, nk), their softmax (each head's partition over every key), the asked columns,
  the head mean. Run under ``torch.utils.checkpoint``: backward recomputes the K x nk scores,
  so only q, k and the (bs, K, K') result are kept.
* :class:`SamplingDensity` (``MultiScaleDeformableAttention``): sampling locations and
  weights, (B, nq, h, levels, points); the density of the asked rows is splatted when asked.

A record stands for the map of :attr:`AttentionRecord.shape`, (B, nq, nk). The record of a
self-attention call folded by query group (``folded_self_attention.py``, B = bs * G) is
viewed (bs, G, nq, nk) as its map was (``DETRDistillerBase.decoder_outputs``), and
:meth:`AttentionRecord.group` is then the record of group g.
"""

import dataclasses
from dataclasses import dataclass
from typing import ClassVar, Optional, Tuple

import torch
from torch import Tensor, nn
from torch.utils.checkpoint import checkpoint

from ..common import gather_queries
from .attention_maps import deformable_sampling, density_grid, multihead_query_key, splat_density


@dataclass(kw_only=True)
class AttentionRecord:
    """Base class: :meth:`rows` of the map, and the batch bookkeeping of folded calls.

    Attributes:
        num_groups (int): G once viewed (bs, G, nq, nk) (a folded call), else 0.
    """

    #: tensor fields with the batch axis first (None, or batch 1 for a broadcast mask)
    batched: ClassVar[Tuple[str, ...]] = ()
    num_groups: int = 0

    def size(self) -> Tuple[int, int, int]:
        """(B, nq, nk) of the map, B counting every row of the recorded batch."""
        raise NotImplementedError

    def _rows(self, idx: Tensor, cols: Optional[Tensor]) -> Tensor:
        raise NotImplementedError

    @property
    def shape(self) -> Tuple[int, ...]:
        """Shape of the map the record stands for: (B, nq, nk), or (bs, G, nq, nk) viewed."""
        batch, nq, nk = self.size()
        if self.num_groups:
            return batch // self.num_groups, self.num_groups, nq, nk
        return batch, nq, nk

    def view(self, *shape: int) -> 'AttentionRecord':
        """The record with its batch axis split as its map would be viewed: a folded call's
        (bs * G, nq, nk) as (bs, G, nq, nk)."""
        batch, nq, nk = self.size()
        if len(shape) != 4 or shape[0] * shape[1] != batch or tuple(shape[2:]) != (nq, nk):
            raise ValueError(f'a record of {self.shape} splits its batch axis only, not {shape}')
        return dataclasses.replace(self, num_groups=shape[1])

    def group(self, g: int) -> 'AttentionRecord':
        """Record of group g of a viewed record: rows b * G + g of the recorded batch."""
        step = self.num_groups
        picked = {f: batch_rows(getattr(self, f), slice(g, None, step)) for f in self.batched}
        return dataclasses.replace(self, num_groups=0, **picked)

    def rows(self, idx: Tensor, cols: Optional[Tensor] = None) -> Tensor:
        """Rows ``idx`` (bs, K) of the head-averaged map over all keys, (bs, K, nk), or over
        keys ``cols`` (bs, K'), (bs, K, K'); see the module docstring."""
        if self.num_groups:
            raise ValueError(f'a record viewed as {self.shape}: take one .group(g) first')
        return self._rows(idx, cols)

    def full(self) -> Tensor:
        """The whole map, (B, nq, nk): O(nq x nk), for tests and inspection."""
        batch, nq, _ = self.size()
        device = getattr(self, self.batched[0]).device
        return self.rows(torch.arange(nq, device=device).expand(batch, nq))


def batch_rows(x: Optional[Tensor], rows: slice) -> Optional[Tensor]:
    """``x[rows]`` on the batch axis; None, or a batch of 1 (broadcast), as they are."""
    return x if x is None or x.shape[0] == 1 else x[rows]


@dataclass
class AttentionWeights(AttentionRecord):
    """Per-head softmax weights, (B, h, nq, nk); h = 1 for a head average."""

    probs: Tensor
    batched: ClassVar[Tuple[str, ...]] = ('probs',)

    @classmethod
    def of_heads(cls, weights: Tensor, num_heads: int) -> 'AttentionWeights':
        """From (B * h, nq, nk) weights, heads of an image together (ConditionalAttention's);
        head-averaged when no gradient is kept for them (no backward to share them with).
        Referred to, not copied: the module's dropout (``attn_drop``) is not in place."""
        n, nq, nk = weights.shape
        probs = weights.view(n // num_heads, num_heads, nq, nk)
        if not (torch.is_grad_enabled() and weights.requires_grad):
            probs = probs.mean(1, keepdim=True)
        return cls(probs)

    def size(self) -> Tuple[int, int, int]:
        return self.probs.shape[0], self.probs.shape[2], self.probs.shape[3]

    def _rows(self, idx: Tensor, cols: Optional[Tensor]) -> Tensor:
        batch = torch.arange(idx.shape[0], device=idx.device)[:, None]
        if cols is None:
            return self.probs[batch, :, idx].mean(2)  # (bs, K, h, nk) -> (bs, K, nk)
        return self.probs[batch[..., None], :, idx[..., None], cols[:, None]].mean(
            -1
        )  # (bs,K,K',h)


@dataclass
class QueryKeyProduct(AttentionRecord):
    """Per-head scaled queries (B, h, nq, d_h) and keys (B, h, nk, d_h) of a softmax attention,
    with its masks: ``attn_mask`` (1 or B, 1 or h, nq, nk), ``key_padding_mask`` (B, 1, 1, nk),
    bool (``True`` = masked) or float (added to the scores)."""

    query: Tensor
    key: Tensor
    attn_mask: Optional[Tensor] = None
    key_padding_mask: Optional[Tensor] = None
    batched: ClassVar[Tuple[str, ...]] = ('query', 'key', 'attn_mask', 'key_padding_mask')

    @classmethod
    def of_call(cls, mha: nn.MultiheadAttention, args: tuple, kwargs: dict) -> 'QueryKeyProduct':
        """From the inputs of a ``nn.MultiheadAttention`` call (:func:`multihead_query_key`)."""
        return cls(*multihead_query_key(mha, args, kwargs))

    def size(self) -> Tuple[int, int, int]:
        return self.query.shape[0], self.query.shape[2], self.key.shape[2]

    def _rows(self, idx: Tensor, cols: Optional[Tensor]) -> Tensor:
        inputs = (self.query, self.key, idx, cols, self.attn_mask, self.key_padding_mask)
        if torch.is_grad_enabled() and (self.query.requires_grad or self.key.requires_grad):
            # backward recomputes the (bs, h, K, nk) scores; nothing random to replay
            return checkpoint(softmax_rows, *inputs, use_reentrant=False, preserve_rng_state=False)
        return softmax_rows(*inputs)


def multihead_record(
    mha: nn.MultiheadAttention, args: tuple, kwargs: dict, out: Tuple[Tensor, Optional[Tensor]]
) -> AttentionRecord:
    """The record of one ``nn.MultiheadAttention`` call, from its inputs and outputs.

    The head-averaged weights it returned (``out[1]``, (B, nq, nk)) where they are the
    pre-dropout softmax (``mha.dropout == 0`` or eval mode), else :class:`QueryKeyProduct`.
    """
    weights = out[1] if isinstance(out, tuple) and len(out) > 1 else None
    pre_dropout = mha.dropout == 0.0 or not mha.training
    if weights is not None and weights.dim() == 3 and pre_dropout:
        return AttentionWeights(weights.unsqueeze(1))
    return QueryKeyProduct.of_call(mha, args, kwargs)


def softmax_rows(
    query: Tensor, key: Tensor, idx: Tensor, cols: Optional[Tensor], *masks: Optional[Tensor]
) -> Tensor:
    """Head mean of the softmax weights of rows ``idx``, at keys ``cols`` (all if None)::

        s_h[b, i, :] = q_h[b, idx[b, i]] k_h[b]^T  (+ masks)        (bs, h, K, nk)
        out[b, i, j] = mean_h softmax(s_h[b, i])[cols[b, j]]       (bs, K, K')

    Args:
        query (Tensor): Scaled queries, (bs, h, nq, d_h).
        key (Tensor): Keys, (bs, h, nk, d_h).
        idx (Tensor): Rows, (bs, K).
        cols (Tensor, optional): Keys to keep, (bs, K').
        *masks (Tensor, optional): Broadcastable to (bs, h, nq, nk), bool or float.

    Returns:
        Tensor: (bs, K, K'), (bs, K, nk) without ``cols``; float32 or wider.
    """
    heads, dim = query.shape[1], query.shape[3]
    q = query.gather(2, idx[:, None, :, None].expand(-1, heads, -1, dim))  # (bs, h, K, d_h)
    scores = q @ key.transpose(-1, -2)  # (bs, h, K, nk)
    scores = scores.to(torch.promote_types(scores.dtype, torch.float32))  # fp16 (autocast): fp32
    for mask in masks:
        if mask is None:
            continue
        if mask.shape[2] > 1:  # the rows idx
            mask = mask.expand(idx.shape[0], -1, -1, -1)
            mask = mask.gather(
                2, idx[:, None, :, None].expand(-1, mask.shape[1], -1, mask.shape[3])
            )
        if mask.dtype == torch.bool:
            scores = scores.masked_fill(mask, float('-inf'))
        else:
            scores = scores + mask
    probs = scores.softmax(-1)
    if cols is not None:
        probs = probs.gather(3, cols[:, None, None, :].expand(-1, heads, idx.shape[1], -1))
    return probs.mean(1)


@dataclass
class SamplingDensity(AttentionRecord):
    """Deformable attention's sampling locations (B, nq, h, levels, points, 2) and weights
    (B, nq, h, levels, points), and the (H, W) grid their density is drawn on."""

    locations: Tensor
    weights: Tensor
    grid_hw: Tuple[int, int]
    batched: ClassVar[Tuple[str, ...]] = ('locations', 'weights')

    @classmethod
    def of_call(cls, attn: nn.Module, kwargs: dict) -> 'SamplingDensity':
        """From the inputs of a ``MultiScaleDeformableAttention`` call."""
        locations, weights = deformable_sampling(attn, kwargs)
        return cls(locations, weights, density_grid(kwargs['spatial_shapes']))

    def size(self) -> Tuple[int, int, int]:
        return self.weights.shape[0], self.weights.shape[1], self.grid_hw[0] * self.grid_hw[1]

    def _rows(self, idx: Tensor, cols: Optional[Tensor]) -> Tensor:
        if cols is not None:
            raise ValueError('a sampling density has rows only: its keys are grid cells')
        locations, weights = (
            gather_queries(x, idx).float() for x in (self.locations, self.weights)
        )
        return splat_density(locations, weights, self.grid_hw)  # fp32 under autocast
