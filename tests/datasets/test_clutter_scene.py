"""The cluttered scenes: deterministic, valid COCO, harder than the shapes in measurable ways."""

import json

import numpy as np
import pytest

from mmdet_detrdistill.datasets import make_synthetic_coco
from mmdet_detrdistill.datasets.clutter_scene import (
    CLUTTER_VERSION,
    MIN_PIXELS,
    generate_clutter_image,
)
from mmdet_detrdistill.datasets.synthetic_coco import generate_image


def _scenes(draw, n: int = 120, size: int = 128) -> list:
    return [draw(np.random.default_rng([0, 0, i]), size)[1] for i in range(n)]


def _iou(a: list, b: list) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / (aw * ah + bw * bh - iw * ih)


def test_same_rng_gives_the_same_scene():
    a_img, a_objs = generate_clutter_image(np.random.default_rng(5), 96)
    b_img, b_objs = generate_clutter_image(np.random.default_rng(5), 96)
    assert np.array_equal(a_img, b_img) and a_objs == b_objs
    assert a_img.dtype == np.uint8 and a_img.shape == (96, 96, 3)


def test_boxes_lie_in_the_image_and_hold_their_visible_pixels():
    for objs in _scenes(generate_clutter_image, n=60):
        assert len(objs) <= 6
        for obj in objs:
            x, y, w, h = obj['bbox']
            assert 0 <= x and 0 <= y and x + w <= 128 and y + h <= 128
            assert MIN_PIXELS <= obj['area'] <= w * h  # visible pixels, inside their box
            assert 0 <= obj['label'] < 4


def test_harder_than_the_shapes_more_objects_overlap_and_a_wider_scale_range():
    stats = {}
    for name, draw in (('shapes', generate_image), ('clutter', generate_clutter_image)):
        scenes = _scenes(draw)
        sides = [np.sqrt(o['bbox'][2] * o['bbox'][3]) for s in scenes for o in s]
        overlapping = sum(
            _iou(a['bbox'], b['bbox']) > 0.2 for s in scenes for i, a in enumerate(s) for b in s[:i]
        )
        stats[name] = (np.mean([len(s) for s in scenes]), max(sides) / min(sides), overlapping)
    assert stats['clutter'][0] > 1.5 * stats['shapes'][0]  # objects per image
    assert stats['clutter'][1] > stats['shapes'][1]  # ratio of largest to smallest object
    assert stats['shapes'][2] == 0 < stats['clutter'][2]  # occlusion: boxes overlap


def test_the_style_is_part_of_the_manifest_and_checked(tmp_path):
    make_synthetic_coco(str(tmp_path / 'c'), 3, 2, img_size=64, style='clutter', verbose=False)
    with open(tmp_path / 'c' / 'manifest.json') as f:
        params = json.load(f)['params']
    assert params['style'] == 'clutter' and (params['min_objects'], params['max_objects']) == (2, 6)
    assert params['style_version'] == CLUTTER_VERSION  # a recalibration regenerates the data
    # the default data's manifest is as before (no style key): existing data is reused
    make_synthetic_coco(str(tmp_path / 's'), 3, 2, img_size=64, verbose=False)
    with open(tmp_path / 's' / 'manifest.json') as f:
        assert 'style' not in json.load(f)['params']
    # one root, the other style: regenerated, not reused
    again = make_synthetic_coco(str(tmp_path / 's'), 3, 2, 64, style='clutter', verbose=False)
    assert again['regenerated']
    with pytest.raises(ValueError, match="style='photos'.*shapes, clutter"):
        make_synthetic_coco(str(tmp_path / 'x'), 3, 2, img_size=64, style='photos')
