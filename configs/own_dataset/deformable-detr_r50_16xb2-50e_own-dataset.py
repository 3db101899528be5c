# Your own COCO-format dataset, step 1: the teacher. mmdet's Deformable DETR R50, fine-tuned on
# your data from MMDetection's published COCO checkpoint (44.3 AP; `load_from`). The dataset is
# set here only: the student and distillation configs of this folder inherit it.
# Guide: docs/own_dataset.md. Train the teacher:
#   tools/dist_train.sh configs/own_dataset/deformable-detr_r50_16xb2-50e_own-dataset.py 8
# (one GPU: python tools/train.py CONFIG --auto-scale-lr, which scales the learning rate.)
_base_ = [
    'mmdet::deformable_detr/deformable-detr_r50_16xb2-50e_coco.py',
    '../_base_/distill_runtime.py',  # custom_imports and the hooks every run needs
]

# ---- your dataset: edit these ----
# Layout: data_root/annotations/{train,val}.json (COCO format) and data_root/{train,val}/ images.
data_root = 'data/own_dataset/'
# The category names of your annotation files' "categories", in the order of your choice:
# class i of the model is the category named classes[i]; categories not listed are ignored.
classes = ('class_a', 'class_b')
train_ann_file = 'annotations/train.json'
train_img_dir = 'train/'
val_ann_file = 'annotations/val.json'
val_img_dir = 'val/'
# -----------------------------------

metainfo = dict(classes=classes)
model = dict(bbox_head=dict(num_classes=len(classes)))
train_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=train_ann_file,
        data_prefix=dict(img=train_img_dir),
    )
)
val_dataloader = dict(
    dataset=dict(
        data_root=data_root,
        metainfo=metainfo,
        ann_file=val_ann_file,
        data_prefix=dict(img=val_img_dir),
    )
)
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + val_ann_file)
test_evaluator = val_evaluator

# Start from the COCO teacher of mmdet's model zoo (configs/deformable_detr/metafile.yml). Its
# 80-class classifier does not fit len(classes): mmengine loads every other weight and warns
# about the classifier's shape, which starts fresh. load_from=None trains from ImageNet instead.
# Once mmdet_detrdistill is imported (the custom_imports of every config of this folder, under
# our tools or mmdet's), URL loads (load_from, init_cfg Pretrained incl. the backbone's
# torchvision://, teacher_ckpt) go through its safe loader (weights_only=True + allow-list).
# Offline machine: pre-fill the cache on one with network access with
# `python tools/model_converters/fetch_checkpoint.py URL` and copy $TORCH_HOME/hub/checkpoints/
# over.
load_from = 'https://download.openmmlab.com/mmdetection/v3.0/deformable_detr/deformable-detr_r50_16xb2-50e_coco/deformable-detr_r50_16xb2-50e_coco_20221029_210934-6bc7d21b.pth'  # noqa: E501
