# D3ETR: deformable-detr R101 -> R50, 12 epochs.
_base_ = './d3etr_deformable-detr-r101_deformable-detr-r50_16xb2-50e_coco.py'

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', end=12, milestones=[11])]
