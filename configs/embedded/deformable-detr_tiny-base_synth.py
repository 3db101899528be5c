# Shared settings of the embedded default for Deformable DETR: mmdet's model shrunk to train on
# 2 CPU cores, on the generated dataset (tools/make_synthetic_coco.py or tools/run_demo.py).
# Four levels: C3-C5 of the narrow ResNet-18 plus one extra (strides 8-64).
_base_ = [
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    './synth-coco_data.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

model = dict(
    num_queries=30,
    backbone=dict(out_indices=(1, 2, 3), **_base_.synth_backbone),
    neck=dict(in_channels=[32, 64, 128]),
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
