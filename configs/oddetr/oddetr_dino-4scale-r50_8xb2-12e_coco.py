# OD-DETR: DINO-4scale R50 (mmdet's own config, 49.0 AP alone), 12 epochs, distilled online from
# its own EMA. No trained teacher. EMA, assignment, groups and weights are ODDETRDistiller's
# defaults; the Deformable R50 config (oddetr_deformable-detr-r50_16xb2-50e_coco.py) spells them
# out. The student keeps mmdet's denoising queries and losses; matching distillation reads its 900
# matching queries only, and the initial-query and auxiliary groups run isolated from the
# denoising queries. The EMA teacher runs in eval mode (no denoising queries).
# Train: tools/dist_train.sh configs/oddetr/<this file> 8
_base_ = [
    'mmdet::dino/dino-4scale_r50_8xb2-12e_coco.py',
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
