# Conditional DETR R101-C5, the D3ETR teacher. mmdet ships no R101 config for
# this family: this one is mmdet's R50 config with a ResNet-101 backbone.
# Train it with: tools/dist_train.sh configs/teachers/conditional-detr_r101_8xb2-50e_coco.py 8
_base_ = [
    'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101'))
)
