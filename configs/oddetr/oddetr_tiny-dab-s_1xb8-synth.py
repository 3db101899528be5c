# OD-DETR on the embedded default (dab): the tiny student and its own EMA teacher.
#   python tools/run_demo.py --family dab --method oddetr
_base_ = '../embedded/dab-detr_tiny-student_1xb8-synth.py'
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)

model = dict(
    _delete_=True,
    type='ODDETRDistiller',
    student={{_base_.model}},
    ema=dict(type='ExpMomentumEMA', momentum=1e-3, gamma=100),
    guided_assignment=dict(type='TeacherGuidedAssignment', alpha=0.5),
    # class scores only (box terms collapse against an EMA of the student, see ODDETRDistiller)
    init_query=dict(
        type='FixedMatchKD',
        losses=dict(loss_bbox=None, loss_iou=None, loss_self_attn=None, loss_cross_attn=None),
    ),
    aux_groups=dict(type='AuxiliaryQueryGroups', num_per_gt=2),
)

# the optimizer leaves the frozen EMA teacher out (no warning per teacher parameter)
optim_wrapper = dict(constructor='StudentOptimWrapperConstructor')
