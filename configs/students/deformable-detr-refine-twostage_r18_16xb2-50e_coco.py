# Two-stage Deformable DETR with box refinement, R18: the student of the model-zoo R50 teacher.
# mmdet's R50 config with an ImageNet ResNet-18 backbone (C3-C5: 128, 256, 512 channels).
# Trainable alone as the baseline:
#   tools/dist_train.sh configs/students/deformable-detr-refine-twostage_r18_16xb2-50e_coco.py 8
_base_ = [
    'mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[128, 256, 512]),
)
