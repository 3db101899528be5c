# Data and schedule of the embedded default, shared by the tiny configs of every family.
# Names start with `synth_` so that this file can sit next to an mmdet config in `_base_`
# (bases may not define the same key); each family's tiny base assigns them, e.g.
# `train_dataloader = {{_base_.synth_train_dataloader}}`.
synth_data_root = 'data/synth_coco/'
synth_metainfo = dict(
    classes=('rectangle', 'ellipse', 'triangle', 'cross'),
    palette=[(220, 20, 60), (0, 130, 200), (60, 180, 75), (245, 130, 48)],
)
synth_img_size = 128
synth_max_iters = 1000

synth_train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(type='Resize', scale=(synth_img_size, synth_img_size), keep_ratio=True),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackDetInputs'),
]
synth_test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(synth_img_size, synth_img_size), keep_ratio=True),
    dict(type='LoadAnnotations', with_bbox=True),
    dict(
        type='PackDetInputs',
        meta_keys=('img_id', 'img_path', 'ori_shape', 'img_shape', 'scale_factor'),
    ),
]
synth_train_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=synth_data_root,
        metainfo=synth_metainfo,
        ann_file='annotations/train.json',
        data_prefix=dict(img='train/'),
        pipeline=synth_train_pipeline,
    ),
)
synth_val_dataloader = dict(
    batch_size=8,
    num_workers=0,
    persistent_workers=False,
    dataset=dict(
        data_root=synth_data_root,
        metainfo=synth_metainfo,
        ann_file='annotations/val.json',
        data_prefix=dict(img='val/'),
        pipeline=synth_test_pipeline,
    ),
)
synth_val_evaluator = dict(ann_file=synth_data_root + 'annotations/val.json')

synth_optim_wrapper = dict(
    optimizer=dict(lr=2e-4),
    clip_grad=dict(max_norm=1.0, norm_type=2),
    paramwise_cfg=dict(custom_keys=dict(backbone=dict(lr_mult=1.0))),
)
synth_train_cfg = dict(
    _delete_=True,
    type='IterBasedTrainLoop',
    max_iters=synth_max_iters,
    val_interval=synth_max_iters,
)
synth_param_scheduler = [
    dict(
        type='MultiStepLR',
        by_epoch=False,
        end=synth_max_iters,
        milestones=[int(synth_max_iters * 0.8)],
    )
]
synth_default_hooks = dict(
    logger=dict(interval=25),
    checkpoint=dict(by_epoch=False, interval=synth_max_iters, max_keep_ckpts=1),
)
# a narrow ResNet-18 without pretrained weights, trained from scratch
synth_backbone = dict(
    depth=18,
    base_channels=16,
    frozen_stages=-1,
    norm_eval=False,
    norm_cfg=dict(type='BN', requires_grad=True),
    init_cfg=None,
)
