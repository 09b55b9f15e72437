"""Train a model from a PaddleSeg-style YAML config.

    python tools/train.py --config configs/stdc2_seg_cityscapes_1024x512_80k.yml \
        --save_dir output/stdc2 --do_eval --use_vdl

Multi-GPU: python -m paddle.distributed.launch --gpus 0,1,2,3 tools/train.py --config ...
"""

from __future__ import annotations

import argparse
import logging

from paddle_stdc.engine.cli import (
    add_common_args,
    add_cpu_threads_arg,
    opts_list,
    set_device,
    setup_logging,
)
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.runtime import ProfilerOptions, ProfilerOptionsError
from paddle_stdc.engine.trainer import TrainOptions, train

logger = logging.getLogger("paddle_stdc")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(p)
    p.add_argument("--save_dir", default="output")
    p.add_argument("--iters", type=int, default=None, help="override `iters`")
    p.add_argument(
        "--batch_size", type=int, default=None, help="override `batch_size` (per process)"
    )
    p.add_argument("--learning_rate", type=float, default=None, help="override the base LR")
    p.add_argument("--save_interval", type=int, default=1000)
    p.add_argument("--log_iters", type=int, default=10)
    p.add_argument("--num_workers", type=int, default=0)
    add_cpu_threads_arg(p)
    p.add_argument("--do_eval", action="store_true", help="evaluate at every save")
    p.add_argument("--use_vdl", action="store_true", help="log to VisualDL in save_dir")
    p.add_argument("--resume_model", default=None, help="a save_dir/iter_N folder")
    p.add_argument("--keep_checkpoint_max", type=int, default=5)
    p.add_argument("--seed", type=int, default=None)
    p.add_argument(
        "--precision", default=None, choices=["fp32", "fp16", "bf16"],
        help="mixed precision on GPU (default: the config's `precision`, else fp32)",
    )  # fmt: skip
    p.add_argument("--amp_level", default=None, choices=["O1", "O2"])
    p.add_argument("--no_pretrained", action="store_true", help="ignore every `pretrained` key")
    p.add_argument(
        "--use_ema", action="store_true",
        help="keep an EMA of the weights (PaddleSeg 2.8: decay min(1-1/(iter+1), 0.999)); "
        "saved as iter_N/ema_model.pdparams, evaluated with --do_eval, best in ema_best_model/",
    )  # fmt: skip
    p.add_argument(
        "--profiler_options", type=_profiler_options, default=None,
        help='PaddleSeg\'s "batch_range=[10,20];profile_path=/tmp/profile;..." (keys: '
        "batch_range, state, sorted_key, tracer_option, profile_path, exit_on_finished)",
    )  # fmt: skip
    return p.parse_args(argv)


def _profiler_options(text: str) -> str:
    """Check ``--profiler_options`` while parsing, for a one-line usage error."""
    try:
        ProfilerOptions.parse(text)
    except ProfilerOptionsError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging(verbose=args.verbose)
    set_device(args.device)
    cfg = load_config(
        args.config,
        opts=opts_list(args.opts),
        learning_rate=args.learning_rate,
        batch_size=args.batch_size,
        iters=args.iters,
        pretrained=not args.no_pretrained,
    )
    logger.info("Config:\n%s", cfg)
    builder = Builder(cfg)
    options = TrainOptions.from_config(
        cfg,
        save_dir=args.save_dir,
        save_interval=args.save_interval,
        log_iters=args.log_iters,
        num_workers=args.num_workers,
        do_eval=args.do_eval,
        use_vdl=args.use_vdl,
        resume_model=args.resume_model,
        keep_checkpoint_max=args.keep_checkpoint_max,
        seed=args.seed,
        precision=args.precision,
        amp_level=args.amp_level,
        use_ema=args.use_ema,
        profiler_options=args.profiler_options,
        cpu_threads=args.cpu_threads,
    )
    try:
        train(builder, options)
    except ProfilerOptionsError as err:
        raise SystemExit(f"error: --profiler_options: {err}") from None


if __name__ == "__main__":
    main()
