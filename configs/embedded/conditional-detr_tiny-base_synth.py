# Shared settings of the embedded default for Conditional DETR: mmdet's model shrunk to train
# on 2 CPU cores, on the generated dataset (tools/make_synthetic_coco.py or tools/run_demo.py).
# Conditional DETR stays 256 wide (mmdet's decoder hard-codes a 256-d sine embedding).
_base_ = [
    'mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    './synth-coco_data.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

model = dict(
    num_queries=30,
    # three stages: stage 4 would be built but unused (DDP would fail on its parameters)
    backbone=dict(
        num_stages=3,
        strides=(1, 2, 2),
        dilations=(1, 1, 1),
        out_indices=(2,),
        **_base_.synth_backbone,
    ),
    neck=dict(in_channels=[64]),  # C4 of the narrow ResNet-18: stride 16, 8x8 tokens
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
