"""Export a trained model for Paddle Inference (or ONNX) with deploy.yaml.

    python tools/export.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml \
        --model_path output/best_model/model.pdparams --save_dir output/export \
        [--input_shape 1 3 1024 2048] [--output_op argmax|softmax|none] [--format paddle|onnx]
"""

from __future__ import annotations

import argparse

from paddle_stdc.engine.cli import add_common_args, opts_list, set_device, setup_logging
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.export import FORMATS, OUTPUT_OPS, export_model
from paddle_stdc.utils.visualize import palette_for
from paddle_stdc.weights import load_pretrained


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(p)
    p.add_argument("--model_path", default=None, help="model.pdparams (path or URL)")
    p.add_argument("--save_dir", default="output/export")
    p.add_argument(
        "--input_shape", nargs=4, type=int, default=None, metavar=("N", "C", "H", "W"),
        help="fixed input shape; -1 for a dynamic dimension (default: -1 3 -1 -1)",
    )  # fmt: skip
    p.add_argument("--output_op", default="argmax", choices=OUTPUT_OPS)
    p.add_argument("--format", default="paddle", choices=FORMATS)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_device(args.device or "cpu")
    cfg = load_config(args.config, opts=opts_list(args.opts), pretrained=False)
    builder = Builder(cfg)
    model = builder.model
    if args.model_path:
        load_pretrained(model, args.model_path, strict=True)
    export_model(
        model,
        args.save_dir,
        cfg.val_dataset_cfg.get("transforms", []),
        model.num_classes,
        input_shape=args.input_shape,
        output_op=args.output_op,
        fmt=args.format,
        palette=palette_for(
            model.num_classes, cfg.val_dataset_cfg.get("type"), cfg.dic.get("palette")
        ),
        source={
            "config": args.config,
            "model_path": args.model_path,
            "model": type(model).__name__,
        },
    )


if __name__ == "__main__":
    main()
