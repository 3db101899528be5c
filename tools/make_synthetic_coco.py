"""Generate the synthetic COCO-format dataset of the embedded default.

python tools/make_synthetic_coco.py [--root data/synth_coco] [--train 1000] [--val 200]
"""

import argparse

from mmdet_detrdistill.datasets import make_synthetic_coco


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[1])
    parser.add_argument('--root', default='data/synth_coco', help='output directory')
    parser.add_argument('--train', type=int, default=1000, help='training images')
    parser.add_argument('--val', type=int, default=200, help='validation images')
    parser.add_argument('--size', type=int, default=128, help='image side in pixels')
    parser.add_argument('--seed', type=int, default=0)
    parser.add_argument('--force', action='store_true', help='regenerate even if present')
    args = parser.parse_args()
    info = make_synthetic_coco(
        args.root, args.train, args.val, args.size, seed=args.seed, force=args.force
    )
    for split, s in info['splits'].items():
        print(f'{split}: {s["num_images"]} images, {s["num_annotations"]} boxes')


if __name__ == '__main__':
    main()
