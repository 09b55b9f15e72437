"""Write train/val/test file lists for your own dataset (PaddleSeg's `type: Dataset`).

One folder of images and one of labels, split at random:
    python tools/prepare_dataset.py --root data/my_dataset --images images --labels labels \
        --val_fraction 0.2 [--test_fraction 0.1] [--seed 0]

A dataset that comes split (CamVid: train/ trainannot/ val/ valannot/ test/ testannot/):
    python tools/prepare_dataset.py --root data/camvid --list_dir data/camvid/lists \
        --split train=train:trainannot val=val:valannot test=test:testannot

Each image is paired with the label at the same relative path (label suffix --label_suffix).
Lines are "image label", relative to --root. Lists go to --list_dir (default: --root); a file
there that this tool did not write is never replaced without --overwrite.
"""

from __future__ import annotations

import argparse
import sys

from paddle_stdc.data.prepare import write_file_lists, write_split_lists


def _split(text: str) -> tuple:
    name, sep, dirs = text.partition("=")
    images, sep2, labels = dirs.partition(":")
    if not (sep and sep2 and name and images and labels):
        raise argparse.ArgumentTypeError(f"--split takes NAME=IMAGES:LABELS, got {text!r}")
    return name, (images, labels)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", required=True, help="dataset root (the config's dataset_root)")
    p.add_argument(
        "--split", nargs="+", type=_split, default=None, metavar="NAME=IMAGES:LABELS",
        help="a dataset that comes split: one list NAME.txt per split from its two folders",
    )  # fmt: skip
    p.add_argument("--images", default="images", help="image folder under --root (no --split)")
    p.add_argument("--labels", default="labels", help="label folder under --root (no --split)")
    p.add_argument("--val_fraction", type=float, default=0.2, help="0: no val list, 1: all val")
    p.add_argument("--test_fraction", type=float, default=0.0, help="> 0 also writes test.txt")
    p.add_argument("--seed", type=int, default=0, help="of the random split")
    p.add_argument("--label_suffix", default=".png")
    p.add_argument("--list_dir", default=None, help="where the lists go (default: --root)")
    p.add_argument("--overwrite", action="store_true", help="replace lists it did not write")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        if args.split:
            report = write_split_lists(
                args.root, dict(args.split), args.label_suffix, args.list_dir, args.overwrite
            )
        else:
            report = write_file_lists(
                args.root, args.images, args.labels, args.val_fraction, args.seed,
                args.label_suffix, args.test_fraction, args.list_dir, args.overwrite,
            )  # fmt: skip
    except (OSError, ValueError) as err:
        print(f"error: {' '.join(str(err).split())}", file=sys.stderr)
        return 1
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
