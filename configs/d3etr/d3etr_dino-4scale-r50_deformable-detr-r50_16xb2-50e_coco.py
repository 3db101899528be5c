# D3ETR across families: MMDetection's published DINO-4scale R50 (49.0 AP, 12 epochs, model zoo)
# -> Deformable DETR R50 student (mmdet's own config, 44.3 AP alone), 50 epochs. The teacher is
# mmdet's own config; its checkpoint is the `Weights` URL of mmdet's configs/dino/metafile.yml.
# Adaptive matching distils predictions and attention maps: the student's 300 queries are
# matched to the teacher's 900 predictions; both models have the same 4-level layout (strides
# 8-64), so the cross-attention sampling densities are drawn on the same stride-32 grid.
# Fixed matching is off: a DINO query (content + reference box, from the teacher's top-k
# proposals) has no Deformable DETR equivalent (content + positional query, reference point),
# and the distiller refuses fixed matching across query formats at build time.
# Train: tools/dist_train.sh configs/d3etr/<this file> 16
_base_ = [
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    '../_base_/distill_runtime.py',
]
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='D3ETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/dino/dino-4scale_r50_8xb2-12e_coco/dino-4scale_r50_8xb2-12e_coco_20221202_182705-55b2bba2.pth',  # noqa: E501
    matcher=dict(type='MixMatcher', adaptive=True, fixed=False, solver='auto'),  # Nt = 900
)
