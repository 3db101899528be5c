# Your own COCO-format dataset, step 2: distil the teacher of step 1 into the R18 student
# (DETRDistill, its default components and weights). Guide: docs/own_dataset.md.
#   tools/dist_train.sh configs/own_dataset/<this file> 8
# Step 3, export the student for plain mmdet:
#   python tools/model_converters/export_student.py work_dirs/<this config>/epoch_50.pth \
#       student.pth
# the student's config inherits ../_base_/distill_runtime.py
_base_ = './deformable-detr_r18_16xb2-50e_own-dataset.py'
custom_imports = dict(imports=['mmdet_detrdistill'], allow_failed_imports=False)
default_hooks = dict(checkpoint=dict(type='AtomicCheckpointHook'))  # kill-safe saves

model = dict(
    _delete_=True,
    type='DETRDistillDistiller',
    # read only by mmdet's init_detector, which then says to export the student first
    backbone=dict(init_cfg='distiller'),
    student={{_base_.model}},
    teacher='{{fileDirname}}/deformable-detr_r50_16xb2-50e_own-dataset.py',
    # where step 1 (tools/train.py, default work_dir) writes the fine-tuned teacher
    teacher_ckpt='work_dirs/deformable-detr_r50_16xb2-50e_own-dataset/epoch_50.pth',
)
