# OD-DETR on the embedded default (conditional): the tiny student and its own EMA teacher.
#   python tools/run_demo.py --family conditional --method oddetr
_base_ = [
    '../embedded/conditional-detr_tiny-student_1xb8-synth.py',
    '../_base_/distill_runtime.py',
]
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='ODDETRDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    ema=dict(type='ExpMomentumEMA', momentum=1e-3, gamma=100),
    guided_assignment=dict(type='ODDETRGuidedAssignment', alpha=0.5),
    # class scores and boxes, each query's box terms weighted by the teacher's confidence (L1 1,
    # GIoU 0.5): equal or better AP than class scores only on 2 families x 3 seeds, see
    # ODDETRDistiller; class scores only: losses=dict(loss_bbox=None, loss_iou=None)
    init_query=dict(type='InitialQueryKD'),
    aux_groups=dict(type='AuxiliaryQueryGroups', num_per_gt=2),
)

# the optimizer leaves the frozen EMA teacher out (no warning per teacher parameter)
optim_wrapper = dict(constructor='StudentOptimWrapperConstructor')
# OD-DETR's matching instability (DN-DETR's): the final-layer matches of 64 training images,
# compared every 125 iterations (one epoch of the generated train set, 1000 images, batch 8)
custom_hooks = [
    *_base_.custom_hooks,
    dict(type='MatchInstabilityHook', num_images=64, interval=125),
]
