# D3ETR: MMDetection's published Conditional DETR R50-C5 (40.9 AP, model zoo) -> R18-C5 student, 50
# epochs. The teacher is mmdet's own config; its checkpoint is the `Weights` URL of mmdet's
# configs/conditional_detr/metafile.yml, downloaded once into the cache load_from uses. MixMatcher
# (adaptive + fixed) and the loss weights are D3ETRDistiller's defaults.
# Train: tools/dist_train.sh configs/d3etr/<this file> 8
# the student's config inherits ../_base_/distill_runtime.py
_base_ = '../students/conditional-detr_r18_8xb2-50e_coco.py'
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='D3ETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/conditional_detr/conditional-detr_r50_8xb2-50e_coco/conditional-detr_r50_8xb2-50e_coco_20221121_180202-c83a1dc0.pth',  # noqa: E501
    matcher=dict(type='MixMatcher', adaptive=True, fixed=True),
)
