# Conditional DETR R18-C5, the student of the model-zoo R50 teacher: mmdet's R50 config with an
# ImageNet ResNet-18 backbone, whose C5 has 512 channels. Trainable alone as the baseline:
#   tools/dist_train.sh configs/students/conditional-detr_r18_8xb2-50e_coco.py 8
_base_ = [
    'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[512]),
)
