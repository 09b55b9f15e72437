"""Generate a small dataset to try the tools on: Cityscapes layout or CamVid-like (pre-split
folders, 11 classes, void = 11; the "Your own data" walk-through in docs/data.md).

    python tools/make_synthetic_data.py --layout camvid --root data/camvid_demo
    python tools/make_synthetic_data.py --layout cityscapes --root data/synthetic_cityscapes

Deterministic (a function of --seed and the sizes); files already there are kept.
"""

from __future__ import annotations

import argparse

from paddle_stdc.data.synthetic import make_synthetic_camvid, make_synthetic_cityscapes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--layout", choices=["camvid", "cityscapes"], required=True)
    p.add_argument("--root", required=True)
    p.add_argument("--num_train", type=int, default=8)
    p.add_argument("--num_val", type=int, default=4)
    p.add_argument("--num_test", type=int, default=4, help="camvid layout only")
    p.add_argument("--size", nargs=2, type=int, default=None, metavar=("W", "H"),
                   help="default: 480 360 (camvid, as CamVid), 512 256 (cityscapes)")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    if args.layout == "camvid":
        counts = {"train": args.num_train, "val": args.num_val, "test": args.num_test}
        root = make_synthetic_camvid(args.root, counts, tuple(args.size or (480, 360)), args.seed)
    else:
        root = make_synthetic_cityscapes(
            args.root, args.num_train, args.num_val, tuple(args.size or (512, 256)), args.seed
        )
    print(f"wrote a {args.layout}-layout dataset under {root}")


if __name__ == "__main__":
    main()
