# DETRDistill on the embedded default (Deformable DETR): tiny teacher -> tiny student.
#   python tools/run_demo.py --family deformable --method detrdistill
# the student's config inherits ../_base_/distill_runtime.py
_base_ = '../embedded/deformable-detr_tiny-student_1xb8-synth.py'
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='DETRDistillDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/../embedded/deformable-detr_tiny-teacher_1xb8-synth.py',
    teacher_ckpt=None,
    # tiny models have few queries: the top-k of the feature masks shrinks with them
    feature_kd=dict(topk=30),
)
