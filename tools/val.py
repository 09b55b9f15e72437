"""Evaluate a trained model on a config's val_dataset.

    python tools/val.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml \
        --model_path output/best_model/model.pdparams [--aug_eval --flip_horizontal] \
        [--eval_scale seg50]

Prints the per-class table (named by the dataset's class names: Cityscapes'/VOC's built in, a
`class_names` list or a labels.txt), our mIoU (mean over the classes present) and PaddleSeg
2.8's (absent classes as 0).
"""

from __future__ import annotations

import argparse

from paddle_stdc.data.palettes import config_class_names
from paddle_stdc.engine.cli import (
    add_trained_model_args,
    eval_kwargs,
    load_trained,
    log_eval_result,
)
from paddle_stdc.engine.evaluator import evaluate


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_trained_model_args(p)
    p.add_argument("--num_workers", type=int, default=0)
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "bf16"])
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    builder = load_trained(args)
    dataset = builder.val_dataset
    result = evaluate(
        builder.model,
        dataset,
        num_workers=args.num_workers,
        precision=args.precision,
        cpu_threads=args.cpu_threads,
        **eval_kwargs(args, builder.test_config()),
    )
    log_eval_result(result, config_class_names(builder.config.dic))


if __name__ == "__main__":
    main()
