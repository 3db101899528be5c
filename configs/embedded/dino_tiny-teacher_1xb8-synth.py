# The embedded default's DINO teacher: a wider backbone, one more decoder layer, a longer
# schedule.
_base_ = './dino_tiny-base_synth.py'

max_iters = 2000
model = dict(
    backbone=dict(base_channels=32),
    neck=dict(in_channels=[64, 128, 256]),
    decoder=dict(num_layers=3),
)
train_cfg = dict(max_iters=max_iters, val_interval=max_iters)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, end=max_iters, milestones=[int(max_iters * 0.8)])
]
default_hooks = dict(checkpoint=dict(interval=max_iters))
