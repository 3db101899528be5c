# Methods compose: D3ETR's adaptive matching (MixMatcher, with attention maps) together with
# DETRDistill's target-aware feature distillation, on Deformable DETR R101 -> R50, 50 epochs.
# Every entry of `components` is independent; its key is the default loss-key prefix, and
# None (e.g. --cfg-options model.components.feature=None) switches it off.
# Train: tools/dist_train.sh configs/detrdistill/<this file> 8 \
#            --cfg-options model.teacher_ckpt=PATH/TO/TEACHER.pth
_base_ = [
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    '../_base_/distill_runtime.py',
]
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='ConfigurableDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/../teachers/deformable-detr_r101_16xb2-50e_coco.py',
    teacher_ckpt='work_dirs/deformable-detr_r101_16xb2-50e_coco/epoch_50.pth',
    components=dict(
        adaptive=dict(type='AdaptiveMatchKD', prefix='d3etr.adaptive'),
        feature=dict(type='TargetAwareFeatureKD', prefix='detrdistill.feature', topk=100),
    ),
)
