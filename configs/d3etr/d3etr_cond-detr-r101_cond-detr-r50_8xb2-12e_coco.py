# D3ETR: Conditional DETR R101-C5 -> R50-C5, 12 epochs (paper: +7.8 mAP, IJCAI: +8.3).
_base_ = './d3etr_cond-detr-r101_cond-detr-r50_8xb2-50e_coco.py'

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', end=12, milestones=[11])]
