# OD-DETR ablation (tools/analysis_tools/ablate_oddetr.py): the initial-query constraint on
# boxes with uniform weights, L1 5, GIoU 2 (the default weighs them by the teacher's confidence,
# L1 1, GIoU 0.5). Against an EMA of the student this collapses the student's boxes; it is kept
# to reproduce that measurement, not to train with.
_base_ = './oddetr_tiny-s_1xb8-synth.py'

model = dict(
    init_query=dict(
        box_weighting='uniform',
        losses=dict(
            loss_bbox=dict(type='L1Loss', loss_weight=5.0),
            loss_iou=dict(type='GIoULoss', loss_weight=2.0),
        ),
    ),
)
