# OD-DETR: Deformable DETR R50 distilled online from its own EMA, 50 epochs. No trained teacher.
# EMA momentum, warm-up and loss weights are not published: these defaults come from the
# ablation on the embedded default (README, "OD-DETR ablation"); every one is a config key.
# Train: tools/dist_train.sh configs/oddetr/<this file> 8
_base_ = [
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
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
    # X_ema <- (1 - m_t) X_ema + m_t X,  m_t = (1 - m) exp(-(1 + t) / gamma) + m
    ema=dict(type='ExpMomentumEMA', momentum=1e-3, gamma=100),
    # matching distillation, every decoder layer: student and EMA teacher Hungarian-matched to
    # the GT separately; student query i learns its own GT and its twin's (teacher query i),
    # classes by a multi-target quality focal loss (beta 2, the head's class-loss weight),
    # boxes by the head's L1 + GIoU. Defaults: twin_weight=1.0 (the twin's targets weigh as
    # much as the own), teacher_layer='same'. The blended-cost variant (the default before
    # 2026-12): --cfg-options model.guided_assignment.type=ODDETRGuidedAssignment
    guided_assignment=dict(type='ODDETRMatchingDistillation'),
    # the teacher's initial queries in the student decoder, their class scores and boxes
    # constrained to the teacher's (box terms weighted by the teacher's confidence, L1 1, GIoU
    # 0.5: see ODDETRDistiller)
    init_query=dict(type='InitialQueryKD', box_weighting='teacher_confidence'),
    # per GT, the two least-cost teacher queries of every decoder stage, trained on that GT
    aux_groups=dict(type='AuxiliaryQueryGroups', num_per_gt=2, stages=None, loss_weight=1.0),
    log_match_instability=True,
)

# the optimizer leaves the frozen EMA teacher out (no warning per teacher parameter)
optim_wrapper = dict(constructor='StudentOptimWrapperConstructor')
# every validation evaluates the student (coco/*) and then its EMA teacher (ema/coco/*): both
# are results; tools/test.py evaluates the student (both: test_cfg.type=StudentAndEMATestLoop)
val_cfg = dict(type='StudentAndEMAValLoop')
