# DETRDistill on the embedded default with DINO: tiny teacher -> tiny student, generated data.
# The student keeps mmdet's denoising queries and losses; the query-prior group (the teacher's
# selected top-k proposals with its content queries) runs isolated from them.
_base_ = '../embedded/dino_tiny-student_1xb8-synth.py'  # it inherits ../_base_/distill_runtime.py
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='DETRDistillDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/../embedded/dino_tiny-teacher_1xb8-synth.py',
    teacher_ckpt=None,
    # tiny models have few queries: the top-k of the feature masks shrinks with them
    feature_kd=dict(topk=30),
)
