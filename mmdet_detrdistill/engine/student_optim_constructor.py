"""An optimizer-wrapper constructor that leaves a registered EMA teacher out."""

from typing import List, Optional, Union

from mmdet.registry import OPTIM_WRAPPER_CONSTRUCTORS
from mmengine.model import BaseAveragedModel
from mmengine.optim import DefaultOptimWrapperConstructor
from torch import nn


@OPTIM_WRAPPER_CONSTRUCTORS.register_module()
class StudentOptimWrapperConstructor(DefaultOptimWrapperConstructor):
    """mmengine's default constructor, minus averaged models (OD-DETR's ``ema_teacher``).

    An external teacher (D3ETR, DETRDistill) is outside the module tree; OD-DETR's EMA teacher
    is a registered submodule with frozen parameters. With a ``paramwise_cfg`` (Conditional,
    DAB and Deformable DETR all have one: ``backbone`` at ``lr_mult=0.1``) the default
    constructor walks every submodule and logs a warning for each frozen parameter it skips:
    one line per teacher parameter at the start of every run. This one does not enter an
    averaged model; every other parameter gets exactly the default's groups and settings
    (tested). Set in the OD-DETR configs as
    ``optim_wrapper = dict(constructor='StudentOptimWrapperConstructor')``.
    """

    def add_params(
        self,
        params: List[dict],
        module: nn.Module,
        prefix: str = '',
        is_dcn_module: Optional[Union[int, float]] = None,
    ) -> None:
        if isinstance(module, BaseAveragedModel):
            return  # frozen: nothing to optimise
        super().add_params(params, module, prefix, is_dcn_module)
