"""Predict an image, a folder or a list file of images: palette masks and colour overlays.

    python tools/predict.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml \
        --model_path output/best_model/model.pdparams --image_path demo/ --save_dir output/result \
        [--aug_pred --scales 0.75 1.0 1.25 --flip_horizontal] \
        [--is_slide --crop_size 1024 512 --stride 768 384] [--custom_color 128 64 128 ...] \
        [--legend]

Outputs keep the images' subfolders (relative to their common folder) and never overwrite
each other: save_dir/pseudo_color_prediction/<name>.png, save_dir/added_prediction/<name>.jpg
(with --legend: a panel naming the classes present, from the config's dataset, beside it).
"""

from __future__ import annotations

import argparse

from paddle_stdc.data.palettes import config_class_names
from paddle_stdc.engine.cli import (
    add_trained_model_args,
    eval_kwargs,
    load_trained,
    parse_custom_color,
    prediction_palette,
)
from paddle_stdc.engine.inference import EvalProtocol
from paddle_stdc.engine.predictor import list_images, predict


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_trained_model_args(p, aug_flags=("--aug_pred", "--aug_eval"))
    p.add_argument(
        "--image_path", required=True,
        help="an image, a folder (recursive) or a .txt list file (one image per line)",
    )  # fmt: skip
    p.add_argument("--save_dir", default="output/result")
    p.add_argument(
        "--palette",
        default=None,
        help="cityscapes | voc | a .json/.txt file of R G B per class (default: the config's "
        "top-level `palette`, else by dataset: Cityscapes colours, VOC's for the rest)",
    )
    p.add_argument(
        "--custom_color", nargs="+", type=int, default=None, metavar="V",
        help="R G B for class 0, then class 1 ... (PaddleSeg's); overrides those classes' "
        "colours of the palette",
    )  # fmt: skip
    p.add_argument(
        "--legend", action="store_true",
        help="draw a legend (colour, class name, share of the pixels) beside each overlay",
    )  # fmt: skip
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    colors = parse_custom_color(args.custom_color)
    builder = load_trained(args)
    model = builder.model
    palette = prediction_palette(
        model.num_classes,
        builder.config.val_dataset_cfg.get("type"),
        args.palette if args.palette is not None else builder.config.dic.get("palette"),
        colors,
    )
    protocol = EvalProtocol.from_dict(eval_kwargs(args, builder.test_config()))
    images = list_images(args.image_path)
    predict(
        model, builder.val_transforms, images, args.save_dir, palette, protocol,
        config_class_names(builder.config.dic), args.legend, cpu_threads=args.cpu_threads,
    )  # fmt: skip


if __name__ == "__main__":
    main()
