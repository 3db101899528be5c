# Your own COCO-format dataset: the R18 student alone (the baseline the distilled student should
# beat), on the dataset of the teacher config of this folder. ImageNet ResNet-18 backbone (C3-C5:
# 128, 256, 512 channels), no COCO detector weights. Guide: docs/own_dataset.md.
#   tools/dist_train.sh configs/own_dataset/deformable-detr_r18_16xb2-50e_own-dataset.py 8
_base_ = './deformable-detr_r50_16xb2-50e_own-dataset.py'

model = dict(
    backbone=dict(depth=18, init_cfg=dict(type='Pretrained', checkpoint='torchvision://resnet18')),
    neck=dict(in_channels=[128, 256, 512]),
)
load_from = None
