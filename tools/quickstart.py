"""Quick start on generated data: train STDC1-Seg on CPU, evaluate, write colour predictions.

python tools/quickstart.py            # ~ a few minutes on 2 CPU cores
"""

from __future__ import annotations

import argparse
import logging

from paddle_stdc.engine.cli import add_cpu_threads_arg, add_verbose_arg, set_device, setup_logging
from paddle_stdc.quickstart import DEFAULT_CONFIG, run_quickstart

logger = logging.getLogger("paddle_stdc")


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("--data_root", default="data/synthetic_cityscapes")
    p.add_argument("--save_dir", default="output/quickstart")
    p.add_argument("--device", default=None)
    p.add_argument("--opts", nargs="+", default=None, metavar="KEY=VALUE")
    add_verbose_arg(p)
    add_cpu_threads_arg(p)
    args = p.parse_args(argv)
    setup_logging(verbose=args.verbose)
    set_device(args.device)
    out = run_quickstart(
        args.config, args.data_root, args.save_dir, opts=args.opts, cpu_threads=args.cpu_threads
    )
    res = out.eval_result
    print(
        f"\nQuick start done: mIoU {res.miou:.4f} ({res.protocol}), pixel acc {res.acc:.4f}, "
        f"kappa {res.kappa:.4f} on {res.num_samples} generated val images; chance level "
        f"(most frequent class everywhere) mIoU {out.chance_miou:.4f}.\n"
        f"Checkpoints: {args.save_dir}/iter_N, VisualDL logs: {args.save_dir} "
        f"(visualdl --logdir {args.save_dir}); colour predictions: {args.save_dir}/predict"
    )


if __name__ == "__main__":
    main()
