"""DETRDistill (arXiv 2211.10156), official headline config: the contrastive head (``cl_head``).

Not in the paper's text; its published 44.1 -> 46.6 was trained with it. A contrastive term
between matched student and teacher decoder embeddings.
"""

from typing import Dict, Tuple

from mmdet.registry import MODELS
from mmdet.structures import SampleList
from mmdet.utils import ConfigType, OptConfigType
from torch import Tensor, nn

from ..common import OWN_GROUP, DecoderOutputs, gather_queries
from ..task_modules.pairing import PairingRequest, SolvedPairings, hungarian_pairing
from .base_component import DistillComponent
from .pair_losses import is_off

NEGATIVES = ('image', 'batch')


class EmbeddingProjection(nn.Module):
    """One side's projection head: ``Linear -> Linear -> BN -> ReLU -> Linear``.

    The official ``MoCoCLHead`` (BIVLab-USTC/DETRDistill,
    ``project/mmdet/models/cl_heads/moco_cl_head.py``) gives each side one
    ``Linear(in, mid)`` followed by an MLP ``Linear(mid, mid), BatchNorm1d(mid),
    ReLU, Linear(mid, mid)``. The head only runs in training, where batch norm
    uses the statistics of the rows it is given; here they are the rows of one
    group (an image, or the whole batch): an affine ``InstanceNorm1d`` over the
    K rows of each group is exactly that, and needs no running statistics.

    Args:
        in_dims (int): Embedding width of the model it projects.
        out_dims (int): Projection width (official ``mid_channels``: 512).
    """

    def __init__(self, in_dims: int, out_dims: int) -> None:
        super().__init__()
        # no bias before the norm: it would be removed by it (the official's get zero gradient)
        self.proj = nn.Linear(in_dims, out_dims, bias=False)
        self.fc1 = nn.Linear(out_dims, out_dims, bias=False)
        self.norm = nn.InstanceNorm1d(out_dims, affine=True)
        self.fc2 = nn.Linear(out_dims, out_dims)

    def forward(self, x: Tensor) -> Tensor:
        """(G, K, in_dims) -> (G, K, out_dims); K >= 2 rows per group."""
        # the norm removes any shift shared by a group's rows, so centring them first changes
        # nothing but the rounding: rows of an untrained decoder differ by ~1%, and
        # fp32 gradients through their uncentred sum lose most of their digits
        x = x - x.mean(dim=1, keepdim=True)
        x = self.fc1(self.proj(x))
        x = self.norm(x.transpose(1, 2)).transpose(1, 2)  # batch norm over each group's rows
        return self.fc2(x.relu())


@MODELS.register_module()
class ContrastiveEmbeddingKD(DistillComponent):
    """DETRDistill's ``cl_head``: InfoNCE between matched decoder embeddings.

    Not in the paper, but on by default in the official distiller that the
    headline 44.1 -> 46.6 was trained with (``Distiller(cl_head=...)`` in
    BIVLab-USTC/DETRDistill ``project/mmdet/distillation/distillers/distiller.py``,
    config ``deformdetr_project/cfg_distill/
    deformdetr_r101_2x_distill_r50_LayerbyLayer_CL_teachergroup.py``). What
    the official code does, and what this component does:

    * **pairs**: in every decoder layer, the student's own queries and the
      teacher's queries paired by the logits distillation's Hungarian matching
      (the official ``pos_assigned_gt_inds`` of its distill assigner; the
      teacher's 300 predictions are the pseudo ground truth, so every student
      query is paired). Here: the same pairing request as the logits
      distillation (:func:`hungarian_pairing`: costs soft-label BCE 1, L1 5,
      GIoU 2, teacher boxes clamped), so the pairing step solves it once for
      both; layer l with the matcher's ``layer_pairs``. The teacher-query
      group is not used.
    * **embeddings**: the decoder's output of that layer (the head's input),
      student with gradient, teacher without (it runs under no_grad).
    * **projections**: one :class:`EmbeddingProjection` per side (not shared,
      not a momentum copy: both are trained by this loss, the teacher model is
      not), to ``embed_dims`` (512), then L2-normalised; one pair of heads for
      all layers.
    * **loss**: :class:`InfoNCEDistillLoss`, temperature 0.07, weight 0.2,
      per layer: each teacher embedding must pick its partner among the
      student embeddings; no memory queue.
    * **negatives**: the official code flattens the whole per-GPU batch
      (2 images there), so the negatives and the batch-norm statistics depend
      on how many images a process holds (``negatives='batch'``). The default
      ``'image'`` takes the other queries of the same image, which makes the
      loss, and its gradients under DDP, independent of the GPU layout.

    Loss keys: ``{prefix}.d{l}.loss_contrastive``.

    Args:
        prefix (str): Loss-key prefix. Defaults to ``'detrdistill.contrastive'``.
        matcher (dict): Matcher of the pairs; its ``adaptive_match_layers``
            and ``layer_pairs`` are used. Defaults to ``MixMatcher`` with the
            logits distillation's costs.
        embed_dims (int): Projection width. Defaults to 512.
        negatives (str): ``'image'`` or ``'batch'`` (see above). Defaults to
            ``'image'``.
        loss (dict, optional): Loss config; ``None`` (or a zero
            ``loss_weight``) switches the component off: no projection heads,
            no pairs, no loss. Defaults to ``InfoNCEDistillLoss`` with
            temperature 0.07 and loss_weight 0.2.
        clamp_teacher_boxes (bool): Match against the teacher's boxes cut to
            the image, as the logits distillation does (and the official
            ``pos_assigned_gt_inds``). Defaults to True.
    """

    def __init__(
        self,
        prefix: str = 'detrdistill.contrastive',
        matcher: ConfigType = dict(type='MixMatcher', adaptive=True, fixed=False),
        embed_dims: int = 512,
        negatives: str = 'image',
        loss: OptConfigType = dict(type='InfoNCEDistillLoss', temperature=0.07, loss_weight=0.2),
        clamp_teacher_boxes: bool = True,
    ) -> None:
        super().__init__(prefix)
        self.pairing = hungarian_pairing(matcher, clamp_teacher_boxes)
        self.matcher = self.pairing.matcher
        self.clamp_teacher_boxes = clamp_teacher_boxes
        if negatives not in NEGATIVES:
            raise ValueError(
                f'ContrastiveEmbeddingKD: negatives={negatives!r}; use one of {NEGATIVES} (the '
                "other queries of the same image, or of the process's whole batch as the "
                'official code)'
            )
        self.embed_dims = embed_dims
        self.negatives = negatives
        self.loss_fn = None if is_off(loss) else MODELS.build(loss)

    def bind(self, student: nn.Module, teacher: nn.Module) -> None:
        if self.all_losses_off():  # no heads that no loss trains (DDP: unused parameters)
            super().bind(student, teacher)
            return
        self.student_proj = EmbeddingProjection(student.embed_dims, self.embed_dims)
        self.teacher_proj = EmbeddingProjection(teacher.embed_dims, self.embed_dims)
        super().bind(student, teacher)

    def all_losses_off(self) -> bool:
        return self.loss_fn is None

    def pairings(self) -> Tuple[PairingRequest, ...]:
        """The student's own queries Hungarian-matched to the teacher's, every layer."""
        return () if self.all_losses_off() else (self.pairing,)

    def loss(
        self,
        student_out: DecoderOutputs,
        teacher_out: DecoderOutputs,
        batch_data_samples: SampleList,
        pairs: SolvedPairings,
    ) -> Dict[str, Tensor]:
        """InfoNCE of every student layer, keys ``{prefix}.d{l}.loss_contrastive``."""
        if self.all_losses_off():
            return {}
        s_hidden = student_out.hidden_states[:, :, student_out.slices[OWN_GROUP]]
        t_hidden = teacher_out.hidden_states[:, :, teacher_out.slices[OWN_GROUP]]
        by_layer: Dict[int, Dict[str, Tensor]] = {}
        for s_l, t_l, (s_idx, t_idx) in pairs[self.pairing].layers:
            student_embeds = gather_queries(s_hidden[s_l], s_idx)  # (bs, K, dim_s)
            teacher_embeds = gather_queries(t_hidden[t_l], t_idx)  # (bs, K, dim_t)
            loss = self.embedding_loss(student_embeds, teacher_embeds)
            by_layer[s_l] = dict(loss_contrastive=loss)
        return self.keyed(by_layer)

    def embedding_loss(self, student_embeds: Tensor, teacher_embeds: Tensor) -> Tensor:
        """Project both sides and take the InfoNCE within each group of negatives.

        Args:
            student_embeds (Tensor): (bs, K, dim_s) student embeddings, pair k of image b
                in row [b, k].
            teacher_embeds (Tensor): (bs, K, dim_t) their teacher partners (detached here).

        Returns:
            Tensor: Scalar loss.
        """
        teacher_embeds = teacher_embeds.detach()
        if self.negatives == 'batch':  # one group of bs * K rows
            student_embeds = student_embeds.flatten(0, 1)[None]
            teacher_embeds = teacher_embeds.flatten(0, 1)[None]
        return self.loss_fn(self.student_proj(student_embeds), self.teacher_proj(teacher_embeds))

    def extra_repr(self) -> str:
        return (
            f'{super().extra_repr()}, clamp_teacher_boxes={self.clamp_teacher_boxes}, '
            f'negatives={self.negatives!r}'
        )
