# D3ETR: MMDetection's published two-stage Deformable DETR (box refinement) R50 (47.0 AP, model zoo)
# -> R18 student, 50 epochs. The teacher is mmdet's own config; its checkpoint is the `Weights` URL
# of mmdet's configs/deformable_detr/metafile.yml, downloaded once into the cache load_from uses.
# MixMatcher (adaptive + fixed) and the loss weights are D3ETRDistiller's defaults.
# Train: tools/dist_train.sh configs/d3etr/<this file> 16
# the student's config inherits ../_base_/distill_runtime.py
_base_ = '../students/deformable-detr-refine-twostage_r18_16xb2-50e_coco.py'
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='D3ETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='mmdet::deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/deformable_detr/deformable-detr-refine-twostage_r50_16xb2-50e_coco/deformable-detr-refine-twostage_r50_16xb2-50e_coco_20221021_184714-acc8a5ff.pth',  # noqa: E501
    matcher=dict(type='MixMatcher', adaptive=True, fixed=True),
)
