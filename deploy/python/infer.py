"""Run an exported model with Paddle Inference: images in, palette masks and overlays out.

    python deploy/python/infer.py --export_dir output/export --image_path images/ \
        --save_dir output/infer [--device gpu --use_trt --precision fp16 \
        --min_shape 1 3 512 1024 --opt_shape 1 3 1024 2048 --max_shape 1 3 1024 2048]
    python deploy/python/infer.py --export_dir output/export --benchmark --shape 1 3 512 1024
    python deploy/python/infer.py --export_dir output/export --backend onnxruntime \
        --precision int8 --image_path images/     # after deploy/python/quantize.py

Needs only the export folder, paddle(-gpu), NumPy, OpenCV and PyYAML.
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from predictor import (  # noqa: E402
    OnnxPredictor,
    Predictor,
    RuntimeOptions,
    benchmark,
    list_images,
)


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--export_dir", required=True, help="folder with deploy.yaml")
    p.add_argument("--image_path", default=None, help="an image or a folder of images")
    p.add_argument("--save_dir", default="output/infer")
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--use_trt", action="store_true", help="TensorRT subgraphs (GPU)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "bf16"],
                   help="TensorRT precision on GPU; bf16 = oneDNN bfloat16 on CPU")  # fmt: skip
    p.add_argument("--cpu_threads", type=int, default=2)
    p.add_argument("--backend", default="paddle", choices=["paddle", "onnxruntime"],
                   help="onnxruntime runs model.onnx, or with --precision int8 the model "
                   "written by deploy/python/quantize.py (CPU)")  # fmt: skip
    p.add_argument("--enable_mkldnn", dest="enable_mkldnn", action="store_true", default=True)
    p.add_argument("--disable_mkldnn", dest="enable_mkldnn", action="store_false")
    p.add_argument("--batch_size", type=int, default=1)
    for name in ("min", "opt", "max"):
        p.add_argument(f"--{name}_shape", nargs=4, type=int, default=None,
                       help=f"TensorRT dynamic shape: {name} N C H W")  # fmt: skip
    p.add_argument("--shape_range_file", default=None, help="shapes collected by a tuning run")
    p.add_argument("--benchmark", action="store_true", help="time the network, print JSON")
    p.add_argument("--shape", nargs=4, type=int, default=[1, 3, 512, 1024])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument(
        "--profile",
        action="store_true",
        help="with --benchmark: Paddle's per-operator time table on stdout (Paddle also "
        "writes profile.log into the working directory)",
    )
    return p.parse_args(argv)


def save(mask: np.ndarray, image: np.ndarray, palette: np.ndarray, out_dir: Path, stem: str):
    from PIL import Image

    out_dir.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(mask, mode="P")
    pil.putpalette(palette.reshape(-1).tolist())
    pil.save(out_dir / f"{stem}.png")
    color = palette[mask][..., ::-1]  # RGB palette -> BGR for OpenCV
    blend = (image.astype(np.float32) * 0.4 + color.astype(np.float32) * 0.6).astype(np.uint8)
    cv2.imwrite(str(out_dir / f"{stem}_overlay.jpg"), blend)


def _palette(deploy: dict) -> np.ndarray:
    palette = np.zeros((256, 3), np.uint8)
    if deploy.get("palette"):
        given = np.asarray(deploy["palette"], np.uint8)
        palette[: len(given)] = given
    else:
        palette[:] = np.random.RandomState(0).randint(0, 255, (256, 3))
    return palette


def main(argv=None) -> None:
    args = parse_args(argv)
    options = RuntimeOptions(
        device=args.device, cpu_threads=args.cpu_threads, enable_mkldnn=args.enable_mkldnn,
        use_trt=args.use_trt, precision=args.precision, min_shape=args.min_shape,
        opt_shape=args.opt_shape, max_shape=args.max_shape, shape_range_file=args.shape_range_file,
        profile=args.profile,
    )  # fmt: skip
    if args.backend == "onnxruntime":
        predictor = OnnxPredictor(args.export_dir, args.precision, args.cpu_threads)
    else:
        predictor = Predictor(args.export_dir, options)
    if args.benchmark:
        result = benchmark(predictor, args.shape, args.warmup, args.repeats)
        del predictor  # Paddle prints the --profile report when the predictor is released
        gc.collect()
        sys.stdout.flush()
        print(json.dumps(result))  # the last line, also after a profile report
        return
    if not args.image_path:
        raise SystemExit("give --image_path (or --benchmark)")
    paths = list_images(Path(args.image_path))
    palette = _palette(predictor.deploy)
    for start in range(0, len(paths), args.batch_size):
        chunk = paths[start : start + args.batch_size]
        images = []
        for path in chunk:
            image = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if image is None:
                raise SystemExit(f"cannot read image {path}")
            images.append(image)
        for path, image, mask in zip(chunk, images, predictor.predict(images, args.batch_size)):
            save(mask, image, palette, Path(args.save_dir), path.stem)
    print(f"wrote {len(paths)} masks to {args.save_dir}")


if __name__ == "__main__":
    main()
