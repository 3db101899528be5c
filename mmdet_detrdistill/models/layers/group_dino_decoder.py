"""DINO decoder whose layers take a folded query-group layout."""

from mmdet.models.layers import DinoTransformerDecoder
from mmdet.models.layers.transformer.utils import MLP
from mmengine.model import ModuleList
from torch import nn

from .group_deformable_detr_decoder import GroupDeformableDetrTransformerDecoderLayer


class GroupDinoTransformerDecoder(DinoTransformerDecoder):
    """``DinoTransformerDecoder`` built with
    :class:`GroupDeformableDetrTransformerDecoderLayer` (DINO's decoder layer
    is Deformable DETR's).

    mmdet's ``forward`` passes extra keywords (``group_layout``) on to every
    layer, so only ``_init_layers`` changes: it is mmdet 3.3.0's
    ``DeformableDetrTransformerDecoder._init_layers`` plus
    ``DinoTransformerDecoder._init_layers`` (copied, same order, so the same
    seed gives the same init) with the layer type swapped. Parameters and
    their names are unchanged, so checkpoints load into either class.
    """

    def _init_layers(self) -> None:
        """mmdet 3.3.0's ``_init_layers`` with the group layer type."""
        self.layers = ModuleList(
            [
                GroupDeformableDetrTransformerDecoderLayer(**self.layer_cfg)
                for _ in range(self.num_layers)
            ]
        )
        self.embed_dims = self.layers[0].embed_dims
        if self.post_norm_cfg is not None:
            raise ValueError(f'{self._get_name()} has no post_norm: set decoder.post_norm_cfg=None')
        self.ref_point_head = MLP(self.embed_dims * 2, self.embed_dims, self.embed_dims, 2)
        self.norm = nn.LayerNorm(self.embed_dims)
