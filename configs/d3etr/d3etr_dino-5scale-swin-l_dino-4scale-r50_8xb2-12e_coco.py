# D3ETR: MMDetection's published DINO-5scale Swin-L (57.2 AP, 12 epochs, model zoo) -> DINO-4scale
# R50 student (mmdet's own config, 49.0 AP alone), 12 epochs. The teacher is mmdet's own config;
# its checkpoint is the `Weights` URL of mmdet's configs/dino/metafile.yml, downloaded once into
# the cache load_from uses. The student keeps mmdet's denoising queries and losses; distillation
# reads its 900 matching queries only.
# Teacher and student differ in their feature levels: Swin-L 5-scale (strides 4-64) against R50
# 4-scale (strides 8-64). Queries carry no level, so both matchings apply (fixed matching: the
# teacher's selected top-k proposals with its content queries, same DINO query format). The
# cross-attention maps do not: a deformable map is drawn on the third level of each model's own
# layout (stride 16 for the teacher, 32 for the student), and AttentionMapDistillLoss refuses
# maps of different sizes, so loss_cross_attn is off in both matchings.
# Train: tools/dist_train.sh configs/d3etr/<this file> 8
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
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
    teacher='mmdet::dino/dino-5scale_swin-l_8xb2-12e_coco.py',
    teacher_ckpt='https://download.openmmlab.com/mmdetection/v3.0/dino/dino-5scale_swin-l_8xb2-12e_coco/dino-5scale_swin-l_8xb2-12e_coco_20230228_072924-a654145f.pth',  # noqa: E501
    # 900 queries: 6 layers x 2 images = 12 Hungarian solves of 900 x 900 a step. 'auto' takes
    # the fastest installed solver for the device (optional lapx on CPU, torch-linear-assignment
    # on CUDA; scipy without them): docs/reports/2026-11-30_matching_900.md
    matcher=dict(type='MixMatcher', adaptive=True, fixed=True, solver='auto'),
    # different level layouts (5 vs 4): no common grid for the cross-attention maps
    adaptive_losses=dict(loss_cross_attn=None),
    fixed_losses=dict(loss_cross_attn=None),
)
