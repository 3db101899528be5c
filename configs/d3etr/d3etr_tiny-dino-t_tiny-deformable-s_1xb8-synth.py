# D3ETR across families and query counts on the embedded default: the tiny DINO teacher with 90
# queries -> the tiny Deformable DETR student with 30, generated data. The tiny counterpart of
# d3etr_dino-4scale-r50_deformable-detr-r50_16xb2-50e_coco.py (900 -> 300 queries): the student's
# 30 queries are matched to 30 of the teacher's 90 predictions, and the self-attention maps are
# compared on the matched queries, each side renormalised over them (AttentionMapDistillLoss).
# Fixed matching is off: a DINO query has no Deformable DETR equivalent.
#   python tools/analysis_tools/benchmark_accuracy.py --families dino-deformable --methods d3etr
# the student's config inherits ../_base_/distill_runtime.py
_base_ = '../embedded/deformable-detr_tiny-student_1xb8-synth.py'
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='D3ETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/../embedded/dino_tiny-teacher-q90_1xb8-synth.py',
    teacher_ckpt=None,
    matcher=dict(type='MixMatcher', adaptive=True, fixed=False),
)
