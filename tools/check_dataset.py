"""Check a config's datasets before training: unreadable, unpaired or mislabelled files,
label values outside [0, num_classes) and ignore_index, what the transforms pad labels with,
and per-class pixel statistics.

    python tools/check_dataset.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml

Exit status 1 when any problem was found.
"""

from __future__ import annotations

import argparse
import sys

from paddle_stdc.data.check import scan_dataset
from paddle_stdc.data.palettes import dataset_class_names
from paddle_stdc.engine.cli import add_verbose_arg, opts_list, setup_logging
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.validate import fill_label_padding


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--splits", nargs="+", default=["train_dataset", "val_dataset"])
    p.add_argument("--num_workers", type=int, default=None, help="processes (default: cores)")
    p.add_argument("--opts", nargs="+", default=None, help="key=value config overrides")
    add_verbose_arg(p)
    return p.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    cfg = load_config(args.config, opts=opts_list(args.opts), pretrained=False)
    builder = Builder(cfg)
    fills = fill_label_padding(cfg.dic)  # as training will: unset padding = ignore_index
    failed = False
    for split in args.splits:
        if not cfg.dic.get(split):
            print(f"{split}: not in the config")
            continue
        # Files only (no transforms), collecting every problem instead of stopping at one.
        dataset_cfg = dict(cfg.dic[split], on_error="skip", transforms=[])
        dataset = builder.build_component(dataset_cfg)
        report = scan_dataset(dataset, f"{split} ({dataset_cfg['type']}, {dataset.mode})",
                              args.num_workers)  # fmt: skip
        mine = [f for f in fills if f.key.startswith(split + ".")]
        report.label_padding = [f.describe() for f in mine]
        report.problems += [f.error() for f in mine if not f.ok]
        print(report.summary(dataset_class_names(cfg.dic[split], split)))
        failed |= not report.ok
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
