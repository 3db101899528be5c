"""What one model's decoder produced in one forward pass, per query group."""

from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Tuple

from torch import Tensor

from .query_group import QueryGroup


@dataclass
class DecoderOutputs:
    """Predictions (and optionally attention maps) of every decoder layer.

    Attributes:
        cls_scores (Tensor): Logits, (num_layers, bs, N, num_classes).
        bbox_preds (Tensor): Normalised cxcywh boxes, (num_layers, bs, N, 4).
        slices (dict[str, slice]): Where each query group sits among the N.
        attn (dict[str, list]): Per kind and layer, records of the
            head-averaged attention maps (``layers/attention_records.py``:
            what rows of a map need, not the map), only of the kinds a loss
            reads: ``'self'``: by group name, the group's block in the call
            that ran it (``layers/group_attention_blocks.py``: a lead, folded
            or tail call, see ``layers/folded_self_attention.py``, or the one
            masked call); ``'cross'``: one record standing for (bs, N',
            num_keys), N' every query of the decoder (DINO's DN queries
            included). Empty when not recorded. Read them through
            :meth:`self_attn_block` and :meth:`cross_attn_rows`.
        own_queries (QueryGroup, optional): The model's own queries as they
            entered its decoder (a teacher's are a student's fixed-matching
            group).
        head_inputs (dict): The head inputs the decoder produced.
        feats (tuple[Tensor]): The neck features, (bs, C, H_i, W_i) per level.
        groups (dict[str, QueryGroup]): The extra query groups that ran next
            to the own queries, by name, as the components gave them (with
            their ``valid`` and ``targets``).
    """

    cls_scores: Tensor
    bbox_preds: Tensor
    slices: Dict[str, slice]
    own_queries: Optional[QueryGroup]
    attn: Dict[str, List[Any]] = field(default_factory=dict)
    head_inputs: Dict = field(default_factory=dict)
    feats: Tuple[Tensor, ...] = ()
    groups: Dict[str, QueryGroup] = field(default_factory=dict)

    @property
    def num_layers(self) -> int:
        """Number of decoder layers with predictions."""
        return self.cls_scores.shape[0]

    @property
    def hidden_states(self) -> Tensor:
        """Decoder output embeddings, (num_layers, bs, N, dim)."""
        return self.head_inputs['hidden_states']

    def group(self, name: str) -> Tuple[Tensor, Tensor]:
        """Logits and boxes of one group: (L, bs, n, C) and (L, bs, n, 4)."""
        s = self.slices[name]
        return self.cls_scores[:, :, s], self.bbox_preds[:, :, s]

    def self_attn_block(self, name: str, layer: int, idx: Tensor) -> Tensor:
        """Self-attention among queries ``idx`` (bs, K) of a group, (bs, K, K).

        ``out[b, i, j] = A[b, idx[b, i], idx[b, j]]``, A the head-averaged map
        of the group's queries, each row softmaxed over every key the query saw.
        Only these rows are formed (the record's ``rows``).
        """
        return self.attn['self'][layer][name].rows(idx, idx)

    def cross_attn_rows(self, name: str, layer: int, idx: Tensor) -> Tensor:
        """Cross-attention of queries ``idx`` (bs, K) of a group to the memory, (bs, K, keys)."""
        return self.attn['cross'][layer].rows(idx + self.slices[name].start)
