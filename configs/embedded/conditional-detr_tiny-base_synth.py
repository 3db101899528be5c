# Shared settings of the embedded default: mmdet's Conditional DETR, shrunk to train on 2 CPU
# cores, on the generated dataset (`python tools/make_synthetic_coco.py`, or tools/run_demo.py).
# Conditional DETR stays 256 wide (mmdet's decoder hard-codes a 256-d sine embedding).
_base_ = 'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py'

data_root = 'data/synth_coco/'
metainfo = dict(
    classes=('rectangle', 'ellipse', 'triangle', 'cross'),
    palette=[(220, 20, 60), (0, 130, 200), (60, 180, 75), (245, 130, 48)],
)
img_size = 128
max_iters = 1000

model = dict(
    num_queries=30,
    backbone=dict(
        depth=18,
        base_channels=16,
        out_indices=(2,),
        frozen_stages=-1,
        norm_eval=False,
        norm_cfg=dict(type='BN', requires_grad=True),
        init_cfg=None,
    ),
    neck=dict(in_channels=[64]),  # C4 of the narrow ResNet-18: stride 16, 8x8 tokens
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    bbox_head=dict(num_classes=4),
    test_cfg=dict(max_per_img=30),
)

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(img_size, img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        pipeline=train_pipeline,
    ),
)
val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        pipeline=test_pipeline,
    ),
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/val.json')
test_evaluator = val_evaluator

optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))),
)
train_cfg = dict(
    _delete_=True, type='IterBasedTrainLoop', max_iters=max_iters, val_interval=max_iters
)
param_scheduler = [
    dict(type='MultiStepLR', by_epoch=False, end=max_iters, milestones=[int(max_iters * 0.8)])
]
default_hooks = dict(
    logger=dict(interval=25), checkpoint=dict(by_epoch=False, interval=max_iters, max_keep_ckpts=1)
)
log_processor = dict(by_epoch=False)
