# DETRDistill: Deformable DETR (box refinement) R101 -> R50, 50 epochs.
# Components and weights are DETRDistillDistiller's defaults; the Deformable R50 config
# (detrdistill_deformable-detr-r101_deformable-detr-r50_16xb2-50e_coco.py) spells them out.
# Train: tools/dist_train.sh configs/detrdistill/<this file> 8 \
#            --cfg-options model.teacher_ckpt=PATH/TO/TEACHER.pth
_base_ = [
    'mmdet::deformable_detr/deformable-detr-refine_r50_16xb2-50e_coco.py',
    '../_base_/distill_runtime.py',
]
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='DETRDistillDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/../teachers/deformable-detr-refine_r101_16xb2-50e_coco.py',
    teacher_ckpt='work_dirs/deformable-detr-refine_r101_16xb2-50e_coco/epoch_50.pth',
)
