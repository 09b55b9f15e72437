"""Predict an image or a folder of images: palette masks and colour overlays.

    python tools/predict.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml \
        --model_path output/best_model/model.pdparams --image_path demo/ --save_dir output/result
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paddle_stdc.engine.cli import (
    add_common_args,
    add_eval_args,
    eval_kwargs,
    opts_list,
    set_device,
    setup_logging,
)
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.predictor import list_images, predict
from paddle_stdc.models.weights import load_pretrained
from paddle_stdc.utils.visualize import palette_for


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_common_args(p)
    p.add_argument("--model_path", required=True, help="model.pdparams (path or URL)")
    p.add_argument("--image_path", required=True, help="an image file or a folder")
    p.add_argument("--save_dir", default="output/result")
    add_eval_args(p)
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    setup_logging()
    set_device(args.device)
    builder = Builder(load_config(args.config, opts=opts_list(args.opts), pretrained=False))
    model = builder.model
    load_pretrained(model, args.model_path, strict=True)
    images = list_images(args.image_path)
    root = Path(args.image_path) if Path(args.image_path).is_dir() else None
    palette = palette_for(model.num_classes, builder.config.val_dataset_cfg.get("type"))
    predict(model, builder.val_transforms, images, args.save_dir, palette, image_root=root,
            **eval_kwargs(args, builder.test_config()))  # fmt: skip


if __name__ == "__main__":
    main()
