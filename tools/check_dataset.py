"""Check a config's datasets before training: unreadable, unpaired or mislabelled files and
per-class pixel statistics.

    python tools/check_dataset.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml

Exit status 1 when any problem was found.
"""

from __future__ import annotations

import argparse
import sys

from paddle_stdc.data.check import scan_dataset
from paddle_stdc.engine.cli import opts_list, setup_logging
from paddle_stdc.engine.config import Builder, load_config


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--splits", nargs="+", default=["train_dataset", "val_dataset"])
    p.add_argument("--num_workers", type=int, default=None, help="processes (default: cores)")
    p.add_argument("--opts", nargs="+", default=None, help="key=value config overrides")
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging()
    cfg = load_config(args.config, opts=opts_list(args.opts), pretrained=False)
    builder = Builder(cfg)
    failed = False
    for split in args.splits:
        if not cfg.dic.get(split):
            print(f"{split}: not in the config")
            continue
        dataset_cfg = dict(cfg.dic[split], on_error="skip")  # collect, don't stop at the first
        dataset = builder.build_component(dataset_cfg)
        report = scan_dataset(dataset, f"{split} ({dataset_cfg['type']}, {dataset.mode})",
                              args.num_workers)  # fmt: skip
        print(report.summary(getattr(dataset, "CLASS_NAMES", None)))
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
