"""Evaluate a trained model on a config's val_dataset.

    python tools/val.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml \
        --model_path output/best_model/model.pdparams [--aug_eval --flip_horizontal] \
        [--eval_scale seg50]
"""

from __future__ import annotations

import argparse
import logging

from paddle_stdc.engine.evaluator import evaluate

from paddle_stdc.engine.cli import (
    add_common_args,
    add_eval_args,
    eval_kwargs,
    opts_list,
    set_device,
    setup_logging,
)
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.models.weights import load_pretrained

logger = logging.getLogger("paddle_stdc")


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(p)
    p.add_argument("--model_path", required=True, help="model.pdparams (path or URL)")
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    add_eval_args(p)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_device(args.device)
    builder = Builder(load_config(args.config, opts=opts_list(args.opts), pretrained=False))
    load_pretrained(builder.model, args.model_path, strict=True)
    kwargs = eval_kwargs(args, builder.test_config())
    result = evaluate(
        builder.model,
        builder.val_dataset,
        num_workers=args.num_workers,
        precision=args.precision,
        **kwargs,
    )
    logger.info("[EVAL] %s", result.summary())


if __name__ == "__main__":
    main()
