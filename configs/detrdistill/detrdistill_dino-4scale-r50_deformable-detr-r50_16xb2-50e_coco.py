# DETRDistill across families: MMDetection's published DINO-4scale R50 (49.0 AP, 12 epochs, model
# zoo) -> Deformable DETR R50 student (mmdet's own config, 44.3 AP alone), 50 epochs. The teacher
# is mmdet's own config; its checkpoint is the `Weights` URL of mmdet's configs/dino/metafile.yml.
# Logits distillation (the student's 300 queries matched to the teacher's 900 predictions), the
# contrastive term on its pairs, and feature distillation (same 4-level neck layout, strides
# 8-64) keep DETRDistillDistiller's defaults.
# The query prior is off: a DINO query (content + reference box, from the teacher's top-k
# proposals) has no Deformable DETR equivalent (content + positional query, reference point),
# and QueryPriorAssignment refuses teacher queries of another query format at build time.
# Train: tools/dist_train.sh configs/detrdistill/<this file> 16
_base_ = [
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    '../_base_/distill_runtime.py',
]
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='DETRDistillDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/dino/dino-4scale_r50_8xb2-12e_coco/dino-4scale_r50_8xb2-12e_coco_20221202_182705-55b2bba2.pth',  # noqa: E501
    query_prior=None,
    # 300 x 900 matching problems (student x teacher queries): the fastest installed solver
    logits_kd=dict(matcher=dict(type='MixMatcher', adaptive=True, fixed=False, solver='auto')),
)
