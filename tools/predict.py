"""Predict an image or a folder of images: palette masks and colour overlays.

    python tools/predict.py --config configs/stdc1_seg_cityscapes_1024x512_80k.yml \
        --model_path output/best_model/model.pdparams --image_path demo/ --save_dir output/result
"""

from __future__ import annotations

import argparse
from pathlib import Path

from paddle_stdc.engine.cli import add_trained_model_args, eval_kwargs, load_trained
from paddle_stdc.engine.inference import EvalProtocol
from paddle_stdc.engine.predictor import list_images, predict
from paddle_stdc.utils.visualize import palette_for


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    add_trained_model_args(p)
    p.add_argument("--image_path", required=True, help="an image file or a folder")
    p.add_argument("--save_dir", default="output/result")
    p.add_argument(
        "--palette",
        default=None,
        help="cityscapes | voc | a .json/.txt file of R G B per class (default: the config's "
        "top-level `palette`, else by dataset: Cityscapes colours, VOC's for the rest)",
    )
    return p.parse_args(argv)


def main(argv=None) -> None:
    args = parse_args(argv)
    builder = load_trained(args)
    model = builder.model
    images = list_images(args.image_path)
    root = Path(args.image_path) if Path(args.image_path).is_dir() else None
    palette = palette_for(
        model.num_classes,
        builder.config.val_dataset_cfg.get("type"),
        args.palette if args.palette is not None else builder.config.dic.get("palette"),
    )
    protocol = EvalProtocol.from_dict(eval_kwargs(args, builder.test_config()))
    predict(model, builder.val_transforms, images, args.save_dir, palette, root, protocol)


if __name__ == "__main__":
    main()
