# D3ETR across families: Deformable DETR R101 teacher -> Conditional DETR R50 student.
# Adaptive matching distils predictions and attention maps (Deformable DETR's
# cross-attention is taken as its sampling density on the C5 grid, the grid
# Conditional DETR attends over). Fixed matching is off: a Deformable query
# (content + position + reference point) has no Conditional DETR equivalent,
# and the distiller refuses fixed matching across query formats at build time.
_base_ = [
    'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    '../_base_/distill_runtime.py',
]
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='D3ETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/../teachers/deformable-detr_r101_16xb2-50e_coco.py',
    teacher_ckpt='work_dirs/deformable-detr_r101_16xb2-50e_coco/epoch_50.pth',
    matcher=dict(type='MixMatcher', adaptive=True, fixed=False),
)
