"""What one model's decoder produced in one forward pass, per query group."""

from dataclasses import dataclass, field
from typing import Dict, List, Optional, Tuple

from torch import Tensor

from .query_group import QueryGroup


@dataclass
class DecoderOutputs:
    """Predictions (and optionally attention maps) of every decoder layer.

    Attributes:
        cls_scores (Tensor): Logits, (num_layers, bs, N, num_classes).
        bbox_preds (Tensor): Normalised cxcywh boxes, (num_layers, bs, N, 4).
        slices (dict[str, slice]): Where each query group sits among the N.
        attn (dict[str, list[Tensor]]): Head-averaged attention maps per kind
            and layer: ``'self'``: (bs, N, N), or (bs, G, n, n) per group when
            the G groups ran their self-attention folded (they see only
            themselves, see ``layers/folded_self_attention.py``); ``'cross'``:
            (bs, N, num_keys). Empty when not recorded. Read them through
            :meth:`self_attn` and :meth:`cross_attn`.
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
    attn: Dict[str, List[Tensor]] = field(default_factory=dict)
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

    def self_attn(self, name: str, layer: int) -> Tensor:
        """Self-attention of a group among itself, (bs, n, n)."""
        attn = self.attn['self'][layer]
        if attn.dim() == 4:  # folded: one map per group, in slice order
            return attn[:, list(self.slices).index(name)]
        s = self.slices[name]
        return attn[:, s, s]

    def cross_attn(self, name: str, layer: int) -> Tensor:
        """Cross-attention of a group's queries to the memory, (bs, n, keys)."""
        return self.attn['cross'][layer][:, self.slices[name]]
