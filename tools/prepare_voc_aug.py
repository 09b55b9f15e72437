"""Pascal VOC 2012 + SBD -> SegmentationClassAug PNGs, trainaug.txt (10,582) and aug.txt.

trainaug = (SBD train ∪ SBD val ∪ VOC train) − VOC val; with the released lists that is
10,582 images, and the tool fails if those lists give any other count. aug.txt (trainaug −
VOC train) is what PaddleSeg's PascalVOC(mode='trainaug') reads after train.txt. Parallel
over processes; re-runs keep up-to-date files.

    python tools/prepare_voc_aug.py --voc_root data/VOCdevkit \
        --sbd_root data/benchmark_RELEASE [--workers 8] [--overwrite]
"""

from __future__ import annotations

import argparse
import sys
import time

from paddle_stdc.data.prepare import prepare_voc_aug


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--voc_root", default="data/VOCdevkit", help="VOCdevkit/ (with VOC2012/)")
    p.add_argument("--sbd_root", default="data/benchmark_RELEASE", help="SBD (with dataset/cls/)")
    p.add_argument("--workers", type=int, default=None, help="processes (default: all cores)")
    p.add_argument("--overwrite", action="store_true", help="redo up-to-date files too")
    p.add_argument("--verbose", action="store_true", help="list every file written")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    tic = time.perf_counter()
    report = prepare_voc_aug(args.voc_root, args.sbd_root, args.workers, args.overwrite)
    print(f"VOC-Aug: {report.summary()} ({time.perf_counter() - tic:.1f} s)")
    if args.verbose:
        print("\n".join(f"  wrote {path}" for path in report.written))
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
