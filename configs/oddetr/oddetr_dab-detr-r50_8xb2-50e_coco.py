# OD-DETR: DAB-DETR R50, 50 epochs, distilled online from its own EMA. No trained teacher.
# EMA, assignment, groups and weights are ODDETRDistiller's defaults; the Deformable R50
# config (oddetr_deformable-detr-r50_16xb2-50e_coco.py) spells them out.
# Train: tools/dist_train.sh configs/oddetr/<this file> 8
_base_ = [
    'mmdet::dab_detr/dab-detr_r50_8xb2-50e_coco.py',
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
)

# the optimizer leaves the frozen EMA teacher out (no warning per teacher parameter)
optim_wrapper = dict(constructor='StudentOptimWrapperConstructor')
# every validation evaluates the student (coco/*) and then its EMA teacher (ema/coco/*): both
# are results; tools/test.py evaluates the student (both: test_cfg.type=StudentAndEMATestLoop)
val_cfg = dict(type='StudentAndEMAValLoop')
