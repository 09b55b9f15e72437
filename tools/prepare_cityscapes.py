"""Cityscapes: gtFine polygon JSON -> *_gtFine_labelTrainIds.png (what the configs train on).

Uses the official cityscapesscripts package (label table and polygon rasteriser), in
parallel over processes; files already newer than their JSON are kept (re-runs write nothing).

    pip install cityscapesscripts==2.3.0
    python tools/prepare_cityscapes.py --root data/cityscapes [--workers 8] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys
import time

from paddle_stdc.data.prepare import prepare_cityscapes


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--root", default="data/cityscapes", help="folder holding gtFine/")
    p.add_argument("--splits", nargs="*", default=None, help="e.g. train val (default: all)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="redo up-to-date files too")
    p.add_argument("--verbose", action="store_true", help="list every file written")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tic = time.perf_counter()
    report = prepare_cityscapes(args.root, args.workers, args.overwrite, args.splits)
    print(f"Cityscapes train ids: {report.summary()} ({time.perf_counter() - tic:.1f} s)")
    if args.verbose:
        print("\n".join(f"  wrote {path}" for path in report.written))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
