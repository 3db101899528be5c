# DETRDistill: MMDetection's published DAB-DETR R50-C5 (42.3 AP, model zoo) -> R18-C5 student, 50
# epochs. The teacher is mmdet's own config; its checkpoint is the `Weights` URL of mmdet's
# configs/dab_detr/metafile.yml, downloaded once into the cache load_from uses. Components and
# weights are DETRDistillDistiller's defaults.
# Train: tools/dist_train.sh configs/detrdistill/<this file> 8
_base_ = '../students/dab-detr_r18_8xb2-50e_coco.py'  # it inherits ../_base_/distill_runtime.py
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='DETRDistillDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/dab_detr/dab-detr_r50_8xb2-50e_coco/dab-detr_r50_8xb2-50e_coco_20221122_120837-c1035c8c.pth',  # noqa: E501
)
