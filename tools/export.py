"""Export a trained model for Paddle Inference (or ONNX) with deploy.yaml.

    python tools/export.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml \
        --model_path output/best_model/model.pdparams [--save_dir output/inference_model] \
        [--input_shape 1 3 1024 2048] [--output_op argmax|softmax|none] [--format paddle|onnx] \
        [--eval_scale seg50]

deploy.yaml carries the palette (the config's `palette`, else the dataset's) and the class
names of the config's dataset, for infer.py's overlays and the serving page.

PaddleSeg's --without_argmax (logits: --output_op none) and --with_softmax (with
--without_argmax: probabilities, --output_op softmax; alone: softmax then argmax, i.e. class
ids) work too.
"""

from __future__ import annotations

import argparse

from paddle_stdc.data.palettes import config_class_names
from paddle_stdc.engine.cli import (
    add_common_args,
    load_builder,
    parse_eval_scale,
    prediction_palette,
    resolve_output_op,
)
from paddle_stdc.export import FORMATS, OUTPUT_OPS, export_model
from paddle_stdc.weights import load_pretrained


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(p)
    p.add_argument("--model_path", default=None, help="model.pdparams (path or URL)")
    p.add_argument("--save_dir", default="output/inference_model")
    p.add_argument(
        "--input_shape", nargs=4, type=int, default=None, metavar=("N", "C", "H", "W"),
        help="fixed input shape; -1 for a dynamic dimension (default: -1 3 -1 -1)",
    )  # fmt: skip
    p.add_argument("--output_op", default=None, choices=OUTPUT_OPS, help="default: argmax")
    p.add_argument("--without_argmax", action="store_true", help="PaddleSeg's: no final argmax")
    p.add_argument("--with_softmax", action="store_true", help="PaddleSeg's: add a softmax")
    p.add_argument("--format", default="paddle", choices=FORMATS)
    p.add_argument(
        "--eval_scale", default=None,
        help="input scale baked into the export: a number or seg50 / seg75 (default: the "
        "config's test_config.eval_scale, else 1.0)",
    )  # fmt: skip
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    builder = load_builder(args, default_device="cpu")
    output_op = resolve_output_op(args)
    cfg, model = builder.config, builder.model
    if args.model_path:
        load_pretrained(model, args.model_path, strict=True)
    export_model(
        model,
        args.save_dir,
        cfg.val_dataset_cfg.get("transforms", []),
        model.num_classes,
        input_shape=args.input_shape,
        output_op=output_op,
        fmt=args.format,
        test_config=builder.test_config(),
        eval_scale=None if args.eval_scale is None else parse_eval_scale(args.eval_scale),
        palette=prediction_palette(
            model.num_classes, cfg.val_dataset_cfg.get("type"), cfg.dic.get("palette")
        ),
        class_names=config_class_names(cfg.dic),  # validated by load_builder
        source={
            "config": args.config,
            "model_path": args.model_path,
            "model": type(model).__name__,
        },
    )


if __name__ == "__main__":
    main()
