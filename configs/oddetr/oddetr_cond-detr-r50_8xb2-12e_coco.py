# OD-DETR: the 50-epoch config on a 12-epoch schedule (lr step at epoch 11).
_base_ = './oddetr_cond-detr-r50_8xb2-50e_coco.py'

train_cfg = dict(type='EpochBasedTrainLoop', max_epochs=12, val_interval=1)
param_scheduler = [dict(type='MultiStepLR', end=12, milestones=[11])]
