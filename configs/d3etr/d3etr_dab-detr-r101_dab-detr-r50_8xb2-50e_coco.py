# D3ETR: dab-detr R101 teacher -> dab-detr R50 student, 50 epochs.
# MixMatcher (adaptive + fixed) and the loss weights are the defaults of
# D3ETRDistiller; d3etr_cond-detr-r101_cond-detr-r50_8xb2-50e_coco.py spells them out.
# Train: tools/dist_train.sh configs/d3etr/<this file> 8 \
#            --cfg-options model.teacher_ckpt=PATH/TO/TEACHER.pth
_base_ = [
    'mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py',
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
    teacher='{{fileDirname}}/../teachers/dab-detr_r101_8xb2-50e_coco.py',
    teacher_ckpt='work_dirs/dab-detr_r101_8xb2-50e_coco/epoch_50.pth',
    matcher=dict(type='MixMatcher', adaptive=True, fixed=True),
)
