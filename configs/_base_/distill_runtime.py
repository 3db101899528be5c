# What every run of this package needs, under any entry point (our tools/train.py, mmdet's,
# or a plain `Runner.from_cfg(Config.fromfile(...))`); no tool adds it. Every training config of
# this repository inherits it, directly or through its student's config (configs/students/,
# configs/embedded/*-base_synth.py). Sits next to an mmdet config in `_base_`:
#   _base_ = ['mmdet::conditional_detr/conditional-detr_r50_8xb2-50e_coco.py',
#             '../_base_/distill_runtime.py']
# Bases may not define the same key, and mmdet's default_runtime.py owns `default_hooks`: so
# each method config sets the checkpoint hook's type itself (mmdet's interval settings merge in):
#   default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))
# AtomicCheckpointHook: checkpoints and `last_checkpoint` written atomically, the oldest
#   checkpoint removed only after the new one is complete; `resume` continues this run (its id is
#   in each checkpoint's meta) from its newest complete checkpoint.
# A config that sets `custom_hooks` replaces this list: keep these in it, e.g.
#   custom_hooks = [*_base_.custom_hooks, dict(type='EMAHook')]
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
custom_hooks = [
    # resume never executes the config text a checkpoint stores in meta['config']
    dict(type='DropExecutableConfigHook'),
    # a resumed run draws the random numbers (dropout) of the uninterrupted one, on every rank
    dict(type='RNGStateHook'),
]
