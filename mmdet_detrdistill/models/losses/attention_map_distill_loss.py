"""Attention-map distillation: MSE between matched attention maps, free of the key count."""

from typing import Optional

import torch.nn.functional as F
from mmdet.registry import MODELS
from torch import Tensor, nn

from ..layers.attention_maps import renormalise_rows

#: reference key counts at which the published weights (D3ETR reference code: self 1e4,
#: cross 1e3) act unchanged: 300 queries (Conditional / Deformable DETR), and the stride-32
#: (C5) grid of an 800 x 1333 input, ceil(800 / 32) x ceil(1333 / 32) = 25 x 42 = 1050 keys
REF_SELF_ATTN_KEYS = 300
REF_CROSS_ATTN_KEYS = 1050


@MODELS.register_module()
class AttentionMapDistillLoss(nn.Module):
    """Key-count-normalised MSE between matched attention maps (D3ETR's attention KD).

    The maps are head-averaged softmax weights already gathered for matched
    query pairs, so the rows (and, for self-attention, the columns) of the
    student map correspond one to one to those of the teacher map. With N
    keys (the last dimension) and a reference key count N_ref::

        loss = w * (N / N_ref) ** 2 * mean((A_s - A_t) ** 2)

    Why the factor: a row sums to 1, so its entries are ~1/N and a plain MSE
    of the same *relative* error shrinks as 1/N^2 (the published weights,
    set for 300 queries, are 100x too strong at 30). With the factor, a
    map and its refinement give the same loss: split every key into k keys
    sharing its weight (rows still sum to 1) and the MSE falls by k^2 while
    (N / N_ref)^2 rises by k^2. So one weight means the same at 30 or 900
    queries and at any image size, and at N = N_ref the loss is the plain
    ``w * MSE`` the published weights were set for. (A per-row divergence
    such as KL would be refinement-free too, but would change what the
    published weights mean.) N counts every key of the map, padded ones
    included: a batch padded to a larger size weighs a little more.

    Self-attention maps (D3ETR, arXiv 2211.09768, Sec. 3, attention-map
    distillation) come in as the K x K block among the matched queries
    (what ``pair_losses`` passes: ``DecoderOutputs.self_attn_block``, formed
    from the kept rows only) and, with ``renormalise=True`` (the default
    self-attention loss of ``components/pair_losses.py``), each side is
    renormalised over its K kept queries first
    (``layers/attention_maps.py::renormalise_rows``)::

        A_s[b, i, j] = S[b, s_i, s_j] / max(sum_k S[b, s_i, s_k], eps)
        A_t[b, i, j] = T[b, t_i, t_j] / max(sum_k T[b, t_i, t_k], eps)

    with (s_i, t_i) the pairs and eps = 1e-12 (a row with no weight on the
    kept queries stays 0 instead of dividing by 0). A teacher with more
    queries than pairs (900 -> 300, or ``teacher_topk``) spreads part of each
    row over queries the student has no partner for, so its raw block would
    sum to less than the student's and the loss could never reach 0; the
    renormalised blocks are equal when the two models agree on the kept
    queries, whatever else either attends to. With every query kept (K = N:
    fixed matching, adaptive matching of equal query counts) the
    renormalisation changes nothing. Here N = K for self-attention.
    ``renormalise=False`` compares the raw blocks (the way before issue #32,
    item 4, kept for its ablation). Cross-attention rows cover every key and
    are compared as given.

    Reference counts (:data:`REF_SELF_ATTN_KEYS`, :data:`REF_CROSS_ATTN_KEYS`):
    self-attention 300 keys (the queries of Conditional / Deformable DETR);
    cross-attention 1050 keys, the C5 (stride-32) grid of an 800 x 1333
    input, 25 x 42. That is the memory Conditional and DAB-DETR attend over,
    and the grid this package draws Deformable DETR's sampling density on
    (``layers/attention_maps.py``), so one reference serves every family.

    Shapes: self-attention (bs, K, K), cross-attention (bs, K, H*W) where K
    is the number of matched pairs per image. Reduction: mean over all
    entries. Computed in fp32; gradients flow to the student map only (the
    teacher map is detached).

    Args:
        loss_weight (float): Weight w. Defaults to 1.0.
        ref_num_keys (int): N_ref, the key count at which ``loss_weight`` is
            a plain MSE weight: 300 for self-attention, 1050 for
            cross-attention (what ``pair_losses`` sets). Required.
        renormalise (bool): Rescale each row of both maps to sum to 1 before
            comparing them (self-attention blocks among kept queries).
            Defaults to False.
    """

    def __init__(
        self,
        loss_weight: float = 1.0,
        ref_num_keys: Optional[int] = None,
        renormalise: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(ref_num_keys, int) or ref_num_keys <= 0:
            raise ValueError(
                f'AttentionMapDistillLoss: ref_num_keys must be a positive int, got '
                f'{ref_num_keys!r}: the key count at which loss_weight is a plain MSE weight, '
                f'{REF_SELF_ATTN_KEYS} for self-attention maps (queries) and '
                f'{REF_CROSS_ATTN_KEYS} for cross-attention maps (C5 keys at 800 x 1333)'
            )
        self.loss_weight = loss_weight
        self.ref_num_keys = ref_num_keys
        self.renormalise = renormalise

    def forward(self, student_attn: Tensor, teacher_attn: Tensor) -> Tensor:
        """Compute the loss (inputs of equal shape; see the class docstring)."""
        if student_attn.shape != teacher_attn.shape:
            raise ValueError(
                f'attention maps differ in shape: student {tuple(student_attn.shape)} vs '
                f'teacher {tuple(teacher_attn.shape)}. Cross-attention maps need the same '
                'feature-map size (same backbone stride and input); otherwise set the '
                'cross-attention loss to None in the distiller config.'
            )
        if self.renormalise:
            student_attn, teacher_attn = (
                renormalise_rows(student_attn),
                renormalise_rows(teacher_attn),
            )
        scale = (student_attn.shape[-1] / self.ref_num_keys) ** 2
        mse = F.mse_loss(student_attn.float(), teacher_attn.detach().float())
        return self.loss_weight * scale * mse

    def extra_repr(self) -> str:
        return (
            f'loss_weight={self.loss_weight}, ref_num_keys={self.ref_num_keys}, '
            f'renormalise={self.renormalise}'
        )
