# D3ETR: deformable-detr-refine-twostage R101 -> R50, 12 epochs.
_base_ = './d3etr_deformable-detr-refine-twostage-r101_deformable-detr-refine-twostage-r50_16xb2-50e_coco.py'  # noqa: E501

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', end=12, milestones=[11])]
