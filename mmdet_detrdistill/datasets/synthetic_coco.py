"""Deterministic synthetic COCO-format detection dataset ("synth-coco").

Images show 1-4 filled shapes (rectangle, ellipse, triangle, cross) of random
colour, size and aspect ratio on a textured, noisy background with a few
distractor lines. Everything is drawn with NumPy and encoded by a minimal PNG
writer (``zlib``), so the same arguments give byte-identical files on any
machine with the same zlib, without depending on PIL or OpenCV.

Layout written under ``root``::

    root/train/000001.png ...
    root/val/000001.png ...
    root/annotations/train.json
    root/annotations/val.json
    root/manifest.json          # generation arguments; written last

With ``style='clutter'`` the scenes are the harder ones of :mod:`.clutter_scene`
(textured backgrounds, unlabelled distractors, occlusion, a wide scale range),
same classes and layout.

Example:
    >>> from mmdet_detrdistill.datasets import make_synthetic_coco
    >>> info = make_synthetic_coco('data/synth_coco', 800, 200, img_size=128)
    >>> hard = make_synthetic_coco('data/synth_clutter', 800, 200, 128, style='clutter')
"""

from __future__ import annotations

import json
import os
import os.path as osp
from typing import Any

import numpy as np

from .png import encode_png

__all__ = [
    'SYNTH_CLASSES',
    'SYNTH_PALETTE',
    'STYLES',
    'make_synthetic_coco',
    'generate_image',
]

#: Category names; COCO category ids are ``index + 1``.
SYNTH_CLASSES: tuple[str, ...] = ('rectangle', 'ellipse', 'triangle', 'cross')
#: Visualisation palette, one RGB colour per class.
SYNTH_PALETTE: list[tuple[int, int, int]] = [
    (220, 20, 60),
    (0, 130, 200),
    (60, 180, 75),
    (245, 130, 48),
]
#: Bumped whenever the drawing code changes, so stale data gets regenerated.
GENERATOR_VERSION = 1
MANIFEST = 'manifest.json'
#: scene styles: the default shapes, and the cluttered scenes of :mod:`.clutter_scene`
STYLES = ('shapes', 'clutter')
_SPLITS = ('train', 'val')


# ----------------------------------------------------------------- drawing
def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Bilinearly upsampled ``cells x cells`` noise in [-1, 1], shape ``(size, size)``."""
    grid = rng.uniform(-1.0, 1.0, (cells + 1, cells + 1))
    pos = np.linspace(0, cells, size, endpoint=False) + 0.5 * cells / size
    i0 = np.floor(pos).astype(int).clip(0, cells - 1)
    t = pos - i0
    rows = grid[i0] * (1 - t)[:, None] + grid[i0 + 1] * t[:, None]
    return rows[:, i0] * (1 - t)[None, :] + rows[:, i0 + 1] * t[None, :]


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    """Colour gradient + low-frequency texture + a few distractor lines (float32)."""
    c0, c1 = rng.uniform(30, 225, 3), rng.uniform(30, 225, 3)
    angle = rng.uniform(0, 2 * np.pi)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / max(size - 1, 1)
    t = (xx * np.cos(angle) + yy * np.sin(angle) + 1.5) / 3.0
    img = c0 + (c1 - c0) * t[..., None]
    img += rng.uniform(10, 30) * _smooth_noise(rng, size, int(rng.integers(3, 9)))[..., None]
    for _ in range(int(rng.integers(0, 4))):
        _draw_line(rng, img, size)
    return img.astype(np.float32)


def _draw_line(rng: np.random.Generator, img: np.ndarray, size: int) -> None:
    """Draw a thin random straight line segment in place."""
    (x0, y0), (x1, y1) = rng.uniform(0, size, (2, 2))
    n = int(max(abs(x1 - x0), abs(y1 - y0))) * 2 + 2
    xs = np.linspace(x0, x1, n).astype(int).clip(0, size - 1)
    ys = np.linspace(y0, y1, n).astype(int).clip(0, size - 1)
    img[ys, xs] = rng.uniform(0, 255, 3)


def _shape_mask(label: int, rng: np.random.Generator, w: int, h: int) -> np.ndarray:
    """Boolean mask of shape ``(h, w)`` for class ``label`` filling its box."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    name = SYNTH_CLASSES[label]
    if name == 'rectangle':
        return np.ones((h, w), bool)
    if name == 'ellipse':
        return ((xx - w / 2) / (w / 2)) ** 2 + ((yy - h / 2) / (h / 2)) ** 2 <= 1.0
    if name == 'triangle':
        apex = rng.uniform(0.0, 1.0)
        # Apex on one edge, base on the opposite one; flips/swaps vary orientation.
        u, v = xx / w, yy / h
        if rng.random() < 0.5:
            v = 1.0 - v
        if rng.random() < 0.5:
            u, v = v, u
        return (u >= apex * (1.0 - v)) & (u <= apex + (1.0 - apex) * v)
    # cross: union of a horizontal and a vertical bar
    th, tw = rng.uniform(0.25, 0.45) * h, rng.uniform(0.25, 0.45) * w
    cy, cx = rng.uniform(th / 2, h - th / 2), rng.uniform(tw / 2, w - tw / 2)
    return (np.abs(yy - cy) <= th / 2) | (np.abs(xx - cx) <= tw / 2)


def _overlaps(box: np.ndarray, boxes: list[np.ndarray]) -> bool:
    """Whether ``box`` (x0, y0, x1, y1) overlaps any box too much (IoU / coverage)."""
    for other in boxes:
        iw = min(box[2], other[2]) - max(box[0], other[0])
        ih = min(box[3], other[3]) - max(box[1], other[1])
        if iw <= 0 or ih <= 0:
            continue
        inter = iw * ih
        a = (box[2] - box[0]) * (box[3] - box[1])
        b = (other[2] - other[0]) * (other[3] - other[1])
        if inter / (a + b - inter) > 0.15 or inter / min(a, b) > 0.35:
            return True
    return False


def _object_colour(rng: np.random.Generator, local_bg: np.ndarray) -> np.ndarray:
    """A random colour that differs clearly from the local background mean."""
    colour = rng.uniform(0, 255, 3)
    for _ in range(20):
        if np.abs(colour - local_bg).sum() > 90:
            break
        colour = rng.uniform(0, 255, 3)
    return colour


def generate_image(
    rng: np.random.Generator,
    size: int,
    min_objects: int = 1,
    max_objects: int = 4,
) -> tuple[np.ndarray, list[dict[str, Any]]]:
    """Draw one image and return ``(uint8 HxWx3 RGB image, objects)``.

    Each object is ``dict(label=int, bbox=[x, y, w, h], area=int)`` with a tight
    integer box around its drawn pixels.
    """
    img = _background(rng, size)
    noise_sigma = rng.uniform(3, 12)
    boxes: list[np.ndarray] = []
    objects: list[dict[str, Any]] = []
    for _ in range(int(rng.integers(min_objects, max_objects + 1))):
        for _attempt in range(20):
            label = int(rng.integers(len(SYNTH_CLASSES)))
            side = size * np.exp(rng.uniform(np.log(0.07), np.log(0.5)))
            ratio = np.exp(rng.uniform(-0.6, 0.6))
            w = int(np.clip(round(side * np.sqrt(ratio)), 6, size - 1))
            h = int(np.clip(round(side / np.sqrt(ratio)), 6, size - 1))
            x0, y0 = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            if not _overlaps(np.array([x0, y0, x0 + w, y0 + h]), boxes):
                break
        else:
            continue
        mask = _shape_mask(label, rng, w, h)
        ys, xs = np.nonzero(mask)
        if len(xs) < 12:
            continue
        region = img[y0 : y0 + h, x0 : x0 + w]
        colour = _object_colour(rng, region.reshape(-1, 3).mean(0))
        shade = rng.uniform(-25, 25) * (np.mgrid[0:h, 0:w][1] / max(w - 1, 1) - 0.5)
        region[mask] = (colour + shade[..., None])[mask]
        bx0, by0 = x0 + int(xs.min()), y0 + int(ys.min())
        bw, bh = int(xs.max() - xs.min()) + 1, int(ys.max() - ys.min()) + 1
        boxes.append(np.array([bx0, by0, bx0 + bw, by0 + bh]))
        objects.append(dict(label=label, bbox=[bx0, by0, bw, bh], area=int(mask.sum())))
    img += rng.normal(0, noise_sigma, img.shape)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8), objects


# ------------------------------------------------------------- generation
def _split_dirs(root: str, split: str) -> tuple[str, str]:
    return osp.join(root, split), osp.join(root, 'annotations', f'{split}.json')


def _generate_split(
    root: str, split: str, num_images: int, params: dict[str, Any], verbose: bool
) -> dict[str, Any]:
    """Write one split's images and COCO json; return a summary."""
    img_dir, ann_file = _split_dirs(root, split)
    os.makedirs(img_dir, exist_ok=True)
    os.makedirs(osp.dirname(ann_file), exist_ok=True)
    images, annotations = [], []
    size, split_id = params['img_size'], _SPLITS.index(split)
    draw = generate_image
    if params.get('style') == 'clutter':
        from .clutter_scene import generate_clutter_image  # it builds on this module's shapes

        draw = generate_clutter_image
    step = max(1, num_images // 5)
    for idx in range(num_images):
        rng = np.random.default_rng([params['seed'], split_id, idx])
        img, objects = draw(rng, size, params['min_objects'], params['max_objects'])
        file_name = f'{idx + 1:06d}.png'
        with open(osp.join(img_dir, file_name), 'wb') as f:
            f.write(encode_png(img))
        images.append(dict(id=idx + 1, file_name=file_name, width=size, height=size))
        for obj in objects:
            annotations.append(
                dict(
                    id=len(annotations) + 1,
                    image_id=idx + 1,
                    category_id=obj['label'] + 1,
                    bbox=obj['bbox'],
                    area=obj['area'],
                    iscrowd=0,
                )
            )
        if verbose and ((idx + 1) % step == 0 or idx + 1 == num_images):
            print(f'[synth-coco] {split}: {idx + 1}/{num_images} images', flush=True)
    coco = dict(
        info=dict(description='mmdet_detrdistill synthetic shapes', version=GENERATOR_VERSION),
        licenses=[],
        images=images,
        annotations=annotations,
        categories=[
            dict(id=i + 1, name=name, supercategory='shape') for i, name in enumerate(SYNTH_CLASSES)
        ],
    )
    with open(ann_file, 'w', encoding='utf-8') as f:
        json.dump(coco, f, separators=(',', ':'))
    return dict(
        img_dir=img_dir, ann_file=ann_file, num_images=num_images, num_annotations=len(annotations)
    )


def _read_manifest(root: str) -> dict[str, Any] | None:
    path = osp.join(root, MANIFEST)
    if not osp.isfile(path):
        return None
    try:
        with open(path, encoding='utf-8') as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def _is_complete(root: str, manifest: dict[str, Any]) -> bool:
    """Whether every file listed by an existing manifest is still on disk."""
    for split in _SPLITS:
        img_dir, ann_file = _split_dirs(root, split)
        count = manifest.get('splits', {}).get(split, {}).get('num_images', -1)
        if not osp.isfile(ann_file) or count < 0:
            return False
        if not all(osp.isfile(osp.join(img_dir, f'{i + 1:06d}.png')) for i in range(count)):
            return False
    return True


def make_synthetic_coco(
    root: str,
    num_train: int,
    num_val: int,
    img_size: int,
    seed: int = 0,
    min_objects: int | None = None,
    max_objects: int | None = None,
    force: bool = False,
    verbose: bool = True,
    style: str = 'shapes',
) -> dict[str, Any]:
    """Generate (or reuse) a synthetic COCO-format detection dataset.

    Args:
        root: Output directory.
        num_train: Number of training images.
        num_val: Number of validation images.
        img_size: Side length of the square images in pixels (>= 32).
        seed: Base seed; image ``i`` of a split is drawn from
            ``np.random.default_rng([seed, split_id, i])``.
        min_objects: Minimum number of objects attempted per image (default 1 for
            ``shapes``, 2 for ``clutter``).
        max_objects: Maximum number of objects per image (default 4 for ``shapes``, 6 for
            ``clutter``).
        force: Regenerate even if a matching manifest exists.
        verbose: Print progress.
        style: ``'shapes'`` (the default data) or ``'clutter'`` (:mod:`.clutter_scene`).

    Returns:
        The manifest: the generation parameters plus ``root``, ``classes``,
        ``splits`` (per split ``img_dir`` and ``ann_file`` relative to ``root``,
        ``num_images``, ``num_annotations``) and ``regenerated`` (False when
        the existing files were reused).
    """
    if style not in STYLES:
        raise ValueError(f'style={style!r}: choose one of {", ".join(STYLES)}')
    default_range = (1, 4) if style == 'shapes' else (2, 6)
    min_objects = default_range[0] if min_objects is None else min_objects
    max_objects = default_range[1] if max_objects is None else max_objects
    if img_size < 32 or not 1 <= min_objects <= max_objects:
        raise ValueError(
            f'bad arguments: img_size={img_size}, objects={min_objects}..{max_objects}'
        )
    params = dict(
        version=GENERATOR_VERSION,
        num_train=int(num_train),
        num_val=int(num_val),
        img_size=int(img_size),
        seed=int(seed),
        min_objects=int(min_objects),
        max_objects=int(max_objects),
        classes=list(SYNTH_CLASSES),
    )
    if style != 'shapes':  # the default data's manifest (and its reuse) stays as it was
        from .clutter_scene import CLUTTER_VERSION

        params['style'] = style
        params['style_version'] = CLUTTER_VERSION
    old = _read_manifest(root)
    if not force and old is not None and old.get('params') == params and _is_complete(root, old):
        if verbose:
            print(f'[synth-coco] reusing existing dataset at {root}', flush=True)
        return dict(old, root=root, regenerated=False)
    manifest_path = osp.join(root, MANIFEST)
    if osp.exists(manifest_path):
        os.remove(manifest_path)  # an interrupted regeneration must not look complete
    os.makedirs(root, exist_ok=True)
    counts = dict(train=num_train, val=num_val)
    splits = {s: _generate_split(root, s, counts[s], params, verbose) for s in _SPLITS}
    rel_splits = {
        s: dict(
            info,
            img_dir=osp.relpath(info['img_dir'], root),
            ann_file=osp.relpath(info['ann_file'], root),
        )
        for s, info in splits.items()
    }
    manifest = dict(params=params, classes=list(SYNTH_CLASSES), splits=rel_splits)
    with open(manifest_path, 'w', encoding='utf-8') as f:
        json.dump(manifest, f, indent=2, sort_keys=True)
    return dict(manifest, root=root, regenerated=True)
