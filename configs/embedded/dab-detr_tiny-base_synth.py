# Shared settings of the embedded default for DAB-DETR: mmdet's model shrunk to train on
# 2 CPU cores, on the generated dataset (tools/make_synthetic_coco.py or tools/run_demo.py).
# DAB-DETR queries are 4-D anchor boxes; mmdet's DAB decoder adapts to any width, 256 kept.
# Two settings differ from mmdet's COCO config, because with them the tiny teacher learns this
# data (2000 iterations, seed 0: 0.1 AP with mmdet's, 0.6 with random anchors, 1.1 with both;
# README, "DAB family"):
# - random anchor centres (`with_random_refpoints`, an option of the DAB-DETR paper): mmdet's
#   default draws them from N(0, 1) before the sigmoid, most in the middle of the image;
# - the image's sine positional encoding at temperature 10000 (mmdet's default, and Conditional
#   DETR's), the temperature of the anchors' own encoding, instead of DAB-DETR's 20.
_base_ = [
    'mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    './synth-coco_data.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

model = dict(
    num_queries=30,
    with_random_refpoints=True,
    positional_encoding=dict(temperature=10000),
    # three stages: stage 4 would be built but unused (DDP would fail on its parameters)
    backbone=dict(
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
        **_base_.synth_backbone,
    ),
    neck=dict(in_channels=[64]),
    encoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    decoder=dict(num_layers=2, layer_cfg=dict(ffn_cfg=dict(feedforward_channels=512))),
    bbox_head=dict(num_classes=4),
    test_cfg=dict(max_per_img=30),
)
train_dataloader = {{_base_.synth_train_dataloader}}
val_dataloader = {{_base_.synth_val_dataloader}}
test_dataloader = val_dataloader
val_evaluator = {{_base_.synth_val_evaluator}}
test_evaluator = val_evaluator
optim_wrapper = {{_base_.synth_optim_wrapper}}
train_cfg = {{_base_.synth_train_cfg}}
param_scheduler = {{_base_.synth_param_scheduler}}
default_hooks = {{_base_.synth_default_hooks}}
log_processor = dict(by_epoch=False)
