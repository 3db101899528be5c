"""The generated dataset is deterministic, valid COCO, and reused when unchanged."""

import hashlib
import json
import os

from pycocotools.coco import COCO

from mmdet_detrdistill.datasets import make_synthetic_coco


def _digest(root):
    h = hashlib.sha256()
    for dirpath, _, files in sorted(os.walk(root)):
        for name in sorted(files):
            if name == 'manifest.json':
                continue
            with open(os.path.join(dirpath, name), 'rb') as f:
                h.update(name.encode() + f.read())
    return h.hexdigest()


def test_same_arguments_give_byte_identical_files(tmp_path):
    make_synthetic_coco(str(tmp_path / 'a'), 6, 3, img_size=64, seed=3, verbose=False)
    make_synthetic_coco(str(tmp_path / 'b'), 6, 3, img_size=64, seed=3, verbose=False)
    make_synthetic_coco(str(tmp_path / 'c'), 6, 3, img_size=64, seed=4, verbose=False)
    assert _digest(tmp_path / 'a') == _digest(tmp_path / 'b')
    assert _digest(tmp_path / 'a') != _digest(tmp_path / 'c')


def test_annotations_are_valid_coco_inside_the_image(tmp_path):
    info = make_synthetic_coco(str(tmp_path), 10, 4, img_size=80, verbose=False)
    coco = COCO(str(tmp_path / info['splits']['train']['ann_file']))
    assert len(coco.getImgIds()) == 10 and len(coco.getCatIds()) == 4
    anns = coco.loadAnns(coco.getAnnIds())
    assert anns and all(1 <= len(coco.getAnnIds(imgIds=i)) <= 4 for i in coco.getImgIds())
    for ann in anns:
        x, y, w, h = ann['bbox']
        assert x >= 0 and y >= 0 and w > 0 and h > 0 and x + w <= 80 and y + h <= 80


def test_existing_dataset_is_reused_and_changes_regenerate(tmp_path):
    first = make_synthetic_coco(str(tmp_path), 4, 2, img_size=64, verbose=False)
    again = make_synthetic_coco(str(tmp_path), 4, 2, img_size=64, verbose=False)
    changed = make_synthetic_coco(str(tmp_path), 5, 2, img_size=64, verbose=False)
    assert first['regenerated'] and not again['regenerated'] and changed['regenerated']
    with open(tmp_path / 'manifest.json') as f:
        assert json.load(f)['params']['num_train'] == 5
