# OD-DETR on the embedded default (DINO): the tiny student and its own EMA teacher.
# The student keeps mmdet's denoising queries and losses; the initial-query and auxiliary
# groups run isolated from them. The EMA teacher runs in eval mode (no denoising queries).
_base_ = '../embedded/dino_tiny-student_1xb8-synth.py'  # it inherits ../_base_/distill_runtime.py
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='ODDETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    ema=dict(type='ExpMomentumEMA', momentum=1e-3, gamma=100),
    # matching distillation: each student query learns its own GT and the GT its EMA twin was
    # matched to (multi-target QFL, L1 + GIoU); the blended-cost variant (the default before
    # 2026-12): model.guided_assignment.type=ODDETRGuidedAssignment
    guided_assignment=dict(type='ODDETRMatchingDistillation'),
    # class scores and boxes, each query's box terms weighted by the teacher's confidence (L1 1,
    # GIoU 0.5): equal or better AP than class scores only on 2 families x 3 seeds, see
    # ODDETRDistiller; class scores only: losses=dict(loss_bbox=None, loss_iou=None)
    init_query=dict(type='InitialQueryKD'),
    aux_groups=dict(type='AuxiliaryQueryGroups', num_per_gt=2),
)

# the optimizer leaves the frozen EMA teacher out (no warning per teacher parameter)
optim_wrapper = dict(constructor='StudentOptimWrapperConstructor')
# every validation evaluates the student (coco/*) and then its EMA teacher (ema/coco/*): both
# are results; tools/test.py evaluates the student (both: test_cfg.type=StudentAndEMATestLoop)
val_cfg = dict(type='StudentAndEMAValLoop')
custom_hooks = [
    *_base_.custom_hooks,
    dict(type='MatchInstabilityHook', num_images=64, interval=125),
]
