# D3ETR: dab-detr R101 -> R50, 12 epochs.
_base_ = './d3etr_dab-detr-r101_dab-detr-r50_8xb2-50e_coco.py'

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', end=12, milestones=[11])]
