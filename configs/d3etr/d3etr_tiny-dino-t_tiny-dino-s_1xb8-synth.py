# D3ETR on the embedded default with DINO: tiny teacher -> tiny student, generated data.
# The student trains with mmdet's denoising queries and losses; the teacher's queries (its
# selected top-k proposals with its content queries) run as an isolated group (fixed matching).
_base_ = '../embedded/dino_tiny-student_1xb8-synth.py'  # it inherits ../_base_/distill_runtime.py
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='D3ETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/../embedded/dino_tiny-teacher_1xb8-synth.py',
    teacher_ckpt=None,
    matcher=dict(type='MixMatcher', adaptive=True, fixed=True),
)
