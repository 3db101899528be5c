# dab-detr R101, a teacher. mmdet ships no R101 config for this family: this is
# mmdet's R50 config with a ResNet-101 backbone.
_base_ = [
    'mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

model = dict(
    backbone=dict(depth=101, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet101'))
)
