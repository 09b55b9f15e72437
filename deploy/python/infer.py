"""Run an exported model: images or a video in, class-id masks and overlays out.

PaddleSeg 2.8's command line works as its docs spell it, and so do this project's flags:

    python deploy/python/infer.py --config output/export/deploy.yaml --image_path images/ \
        --save_dir output/infer --use_trt False --enable_mkldnn True --with_argmax
    python deploy/python/infer.py --export_dir output/export --image_path list.txt \
        [--device gpu --use_trt True --precision fp16 --enable_auto_tune True]
    python deploy/python/infer.py --export_dir output/export --video_path clip.mp4 --save_dir out
    python deploy/python/infer.py --export_dir output/export --benchmark --shape 1 3 512 1024
    python deploy/python/infer.py --export_dir output/export --backend onnxruntime \
        --precision int8 --image_path images/     # after deploy/python/quantize.py
    python deploy/python/infer.py --export_dir output/export --backend openvino \
        --precision bf16|int8 --video_path clip.mp4   # int8: quantize.py --backend openvino
    python deploy/python/infer.py --export_dir output/export --backend auto --image_path x.png

Boolean flags take True/False (PaddleSeg's style) or stand alone (= True). ``--image_path`` is
an image, a folder or a list file; outputs keep the input's relative names and subfolders:
``<name>.png`` (palette PNG of class ids) and ``<name>_overlay.jpg``; ``--legend`` adds a panel
naming the classes in the image (deploy.yaml's ``class_names``, else ``class <id>``) to the
overlay. Also runs as ``python -m deploy.python.infer``. Needs only the export folder, the
backend's runtime (paddle(-gpu), onnxruntime or openvino), NumPy, OpenCV and PyYAML. Which
runtime runs which precision is :mod:`deploy.python.backends`' table; ``--backend auto`` takes
the fastest one for the precision asked (fp32 by default), measured once and cached.
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, List, NoReturn, Optional, Sequence

import cv2
import numpy as np

try:
    from deploy.images import list_images, output_names
    from deploy.python import backends
    from deploy.python.predictor import RuntimeOptions, benchmark
    from deploy.python.video import (
        VideoError,
        check_source,
        overlay,
        palette_array,
        segment_video,
    )
    from deploy.schema import class_names_of
    from deploy.visual import palette_png, with_legend
except ModuleNotFoundError as _err:  # run as a file without `pip install -e .`
    raise SystemExit(f"infer.py: error: {_err}; run `pip install -e .`") from None

PROG = "infer.py"
TUNE_IMAGES = 10  # images (or first video frames) used to collect TensorRT shape ranges
_TRUE = ("true", "1", "yes", "y", "on")
_FALSE = ("false", "0", "no", "n", "off")


class UsageError(ValueError):
    """A flag or input the user gave cannot be used; the message names it."""


def warn(message: str) -> None:
    """One warning line on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


def str2bool(value: str) -> bool:
    """``True``/``False`` (any case, or 1/0, yes/no) as PaddleSeg's ``type=eval`` flags take."""
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise argparse.ArgumentTypeError(f"expected True or False, got {value!r}")


class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error (``infer.py: error: ...``) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{PROG}: error: {message} (see --help)\n")


def _flag(p: argparse.ArgumentParser, name: str, default: bool, help_text: str) -> None:
    p.add_argument(name, type=str2bool, nargs="?", const=True, default=default,
                   metavar="True|False", help=f"{help_text} (default {default})")  # fmt: skip


def _add_io(p: argparse.ArgumentParser) -> None:
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--config", help="the export's deploy.yaml (PaddleSeg's flag)")
    model.add_argument("--export_dir", help="the export folder (holds deploy.yaml)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--image_path", help="an image, a folder (recursive) or a .txt list file")
    src.add_argument("--video_path", help="a video file or a camera index (0, 1, ...)")
    p.add_argument("--save_dir", default="output/infer", help="where masks/overlays are written")
    p.add_argument("--batch_size", type=int, default=1)
    _flag(p, "--legend", False, "draw a legend (colour, class name, share of the pixels) "
          "beside each image overlay")  # fmt: skip


def _add_runtime(p: argparse.ArgumentParser) -> None:
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"],
                   help="gpu needs a CUDA build of Paddle; exit code 2 otherwise")  # fmt: skip
    p.add_argument("--backend", default="paddle", choices=backends.CHOICES,
                   help="paddle: Paddle Inference (PaddleSeg's); onnxruntime / openvino run "
                   "model.onnx (CPU), with --precision int8 the model deploy/python/quantize.py "
                   "wrote; auto: the fastest installed backend for --precision, measured once "
                   "(default paddle)")  # fmt: skip
    p.add_argument("--precision", default="fp32", choices=list(backends.PRECISIONS),
                   help="paddle: fp16/int8 = TensorRT (GPU), bf16 = oneDNN (CPU); "
                   "onnxruntime: fp32 int8; openvino: fp32 bf16 int8")  # fmt: skip
    p.add_argument("--cpu_threads", type=int, default=2)
    _flag(p, "--enable_mkldnn", True, "oneDNN on CPU")
    p.add_argument("--disable_mkldnn", dest="enable_mkldnn", action="store_false",
                   help="same as --enable_mkldnn False")  # fmt: skip
    _flag(p, "--use_trt", False, "TensorRT subgraphs (GPU only)")
    p.add_argument("--min_subgraph_size", type=int, default=None,
                   help="TensorRT: smallest subgraph handed to TensorRT")  # fmt: skip
    for name in ("min", "opt", "max"):
        p.add_argument(f"--{name}_shape", nargs=4, type=int, default=None,
                       help=f"TensorRT dynamic shape: {name} N C H W")  # fmt: skip
    p.add_argument("--shape_range_file", default=None, help="shapes collected by a tuning run")
    _flag(p, "--enable_auto_tune", False, "collect TensorRT shape ranges on the first "
          f"{TUNE_IMAGES} inputs, then use them (GPU + TensorRT)")  # fmt: skip
    p.add_argument(
        "--auto_tuned_shape_file",
        default=None,
        help="keep the collected shape ranges here (default: a temporary file)",
    )
    _flag(p, "--print_detail", True, "print the resolved runtime settings (stderr)")
    p.add_argument(
        "--with_argmax",
        action="store_true",
        help="argmax over the classes (always done when the export has no argmax)",
    )


def _add_benchmark(p: argparse.ArgumentParser) -> None:
    _flag(p, "--benchmark", False, "time the network; with --image_path, time the images")
    p.add_argument("--model_name", default="", help="with --benchmark: name in the report")
    p.add_argument("--shape", nargs=4, type=int, default=[1, 3, 512, 1024])
    p.add_argument("--warmup", type=int, default=3)
    p.add_argument("--repeats", type=int, default=10)
    p.add_argument("--profile", action="store_true",
                   help="with --benchmark: Paddle's per-operator time table on stdout (Paddle "
                   "also writes profile.log into the working directory)")  # fmt: skip


def parse_args(argv: Optional[Sequence[str]] = None) -> argparse.Namespace:
    """The command line (PaddleSeg 2.8's flags plus this project's)."""
    p = _Parser(prog=PROG, description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    _add_io(p)
    _add_runtime(p)
    _add_benchmark(p)
    args = p.parse_args(argv)
    for name in ("batch_size", "cpu_threads", "repeats"):
        if getattr(args, name) < 1:
            p.error(f"argument --{name}: must be >= 1, got {getattr(args, name)}")
    return args


def export_dir_of(args: argparse.Namespace) -> Path:
    """The export folder named by ``--export_dir`` or by ``--config EXPORT/deploy.yaml``."""
    if args.export_dir:
        return Path(args.export_dir)
    config = Path(args.config)
    if config.is_dir():
        return config
    if not config.is_file():
        raise UsageError(f"--config {config}: no such file (give the export's deploy.yaml)")
    if config.name != "deploy.yaml":
        raise UsageError(
            f"--config {config}: expected the deploy.yaml written by tools/export.py, not a "
            "training config (that one goes to tools/predict.py)"
        )
    return config.parent


def runtime_options(args: argparse.Namespace) -> RuntimeOptions:
    """RuntimeOptions for the flags; GPU-only settings on CPU are warned about and dropped
    (PaddleSeg's TensorRT precisions run Paddle Inference at fp32 on CPU: the table's
    ``fallback``); a combination the table does not run is a BackendError."""
    use_trt, precision = args.use_trt, args.precision
    on_cpu = args.device == "cpu"
    if on_cpu and use_trt:
        warn("--use_trt True needs --device gpu; running on CPU without TensorRT")
        use_trt = False
    precision, why = backends.fallback(args.backend, args.device, precision)
    if why:
        warn(why)
    if args.backend != "auto":
        backends.check(args.backend, precision, args.device)
    values = dict(
        device=args.device, cpu_threads=args.cpu_threads,
        enable_mkldnn=args.enable_mkldnn, use_trt=use_trt, precision=precision,
        min_shape=args.min_shape, opt_shape=args.opt_shape, max_shape=args.max_shape,
        shape_range_file=args.shape_range_file, profile=args.profile,
    )  # fmt: skip
    if args.min_subgraph_size is not None:
        values["min_subgraph_size"] = args.min_subgraph_size
    return RuntimeOptions(**values)


def auto_tune(
    make_predictor: Callable[[RuntimeOptions], Any],
    options: RuntimeOptions,
    images: Sequence[np.ndarray],
    shape_file: Path,
    batch_size: int = 1,
) -> RuntimeOptions:
    """PaddleSeg's --enable_auto_tune: collect shape ranges without TensorRT, then use them.

    Returns ``options`` with ``shape_range_file`` set, or unchanged (with a warning) where
    tuning does not apply (CPU, no TensorRT, no inputs) or fails.
    """
    if options.device != "gpu" or not options.use_trt:
        warn("--enable_auto_tune applies to --device gpu --use_trt True only; skipped")
        return options
    if not images:
        warn("--enable_auto_tune: no input to collect shapes from; skipped")
        return options
    shape_file.parent.mkdir(parents=True, exist_ok=True)
    tuning = dataclasses.replace(options, use_trt=False, collect_shape_range_file=str(shape_file))
    try:
        predictor = make_predictor(tuning)
        predictor.predict(list(images), batch_size)
        del predictor  # Paddle writes the shape file when the predictor is released
        gc.collect()
    except Exception as err:  # noqa: BLE001 - PaddleSeg also falls back (e.g. out of memory)
        warn(f"--enable_auto_tune: collecting shapes failed ({err}); TensorRT runs without them")
        return options
    if not shape_file.is_file():
        warn(f"--enable_auto_tune: no shape file was written to {shape_file}; skipped")
        return options
    return dataclasses.replace(options, shape_range_file=str(shape_file))


def _info(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr, flush=True)


def _shape_hint(args: argparse.Namespace) -> List[int]:
    """The input ``--backend auto`` measures on: the first image's or frame's size (the
    export's own Resize/Padding still apply), else ``--shape``."""
    frames = []
    if args.image_path:
        frames = [_read_image(list_images(args.image_path)[0])]
    elif args.video_path and not str(args.video_path).isdigit():
        cap = cv2.VideoCapture(str(args.video_path))
        ok, frame = cap.read()
        cap.release()
        frames = [frame] if ok else []
    if frames:
        return [args.batch_size, 3, *frames[0].shape[:2]]
    return list(args.shape)


def make_predictor(args: argparse.Namespace, options: RuntimeOptions) -> Any:
    """The predictor :mod:`deploy.python.backends` names for ``--backend``/``--precision``."""
    hint = _shape_hint(args) if args.backend == "auto" else None
    return backends.create_predictor(
        export_dir_of(args), args.backend, options, shape_hint=hint, log=_info
    )


def _read_image(path: Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise UsageError(f"--image_path: cannot read image {path}")
    return image


def save(
    mask: np.ndarray,
    image: np.ndarray,
    palette: np.ndarray,
    out_dir: Path,
    name: str,
    legend_names: Optional[Sequence[str]] = None,
    legend: bool = False,
) -> None:
    """``out_dir/name.png`` (palette PNG of class ids) and ``out_dir/name_overlay.jpg`` (with
    ``legend``: a panel of the classes present, named by ``legend_names``, on its right)."""
    target = out_dir / f"{name}.png"
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(palette_png(mask, palette))
    blend = overlay(image, mask, palette)
    if legend:
        blend = with_legend(blend, mask, palette, legend_names)
    cv2.imwrite(str(out_dir / f"{name}_overlay.jpg"), blend)


def predict_images(
    predictor: Any,
    paths: Sequence[Path],
    save_dir: Path,
    batch_size: int,
    palette: np.ndarray,
    names: Optional[Sequence[str]] = None,
    legend: bool = False,
) -> List[float]:
    """Masks and overlays for ``paths`` under ``save_dir``; seconds per batch."""
    out_names = output_names(paths)
    times = []
    for start in range(0, len(paths), batch_size):
        chunk = paths[start : start + batch_size]
        images = [_read_image(path) for path in chunk]
        tic = time.perf_counter()
        masks = predictor.predict(images, batch_size)
        times.append(time.perf_counter() - tic)
        for path, image, mask in zip(chunk, images, masks):
            save(mask, image, palette, save_dir, out_names[Path(path)], names, legend)
    return times


def _tuning_inputs(args: argparse.Namespace) -> List[np.ndarray]:
    if args.image_path:
        return [_read_image(p) for p in list_images(args.image_path)[:TUNE_IMAGES]]
    if args.video_path:
        source = args.video_path
        cap = cv2.VideoCapture(int(source) if source.isdigit() else source)
        frames = []
        while len(frames) < TUNE_IMAGES:
            ok, frame = cap.read()
            if not ok:
                break
            frames.append(frame)
        cap.release()
        return frames
    return [np.zeros((args.shape[2], args.shape[3], 3), np.uint8)]


def _detail(predictor: Any, options: RuntimeOptions) -> None:
    what = (f"backend={predictor.backend} device={options.device} "
            f"threads={options.cpu_threads} precision={predictor.precision}")  # fmt: skip
    if predictor.backend == "paddle":  # Paddle Inference's own switches
        what += (f" onednn={options.enable_mkldnn} tensorrt={options.use_trt} "
                 f"shape_range_file={options.shape_range_file}")  # fmt: skip
    argmax = "in the model" if predictor.deploy.get("output_op") == "argmax" else "after the model"
    print(f"{PROG}: {what} argmax={argmax}", file=sys.stderr, flush=True)


def _benchmark(args: argparse.Namespace, predictor: Any) -> dict:
    result = benchmark(predictor, args.shape, args.warmup, args.repeats)
    result.update(backend=predictor.backend, precision=predictor.precision)
    if args.model_name:
        result["model_name"] = args.model_name
    return result


def _run_images(args: argparse.Namespace, predictor: Any) -> None:
    paths = list_images(args.image_path)
    palette = palette_array(predictor.deploy)
    names = class_names_of(predictor.deploy)
    times = predict_images(predictor, paths, Path(args.save_dir), args.batch_size, palette,
                           names, args.legend)  # fmt: skip
    print(f"wrote {len(paths)} masks to {args.save_dir}")
    if args.benchmark:
        report = {"images": len(paths), "batch_size": args.batch_size,
                  "latency_ms_median": round(float(np.median(times)) * 1000, 2),
                  "fps": round(len(paths) / sum(times), 2)}  # fmt: skip
        report.update(backend=predictor.backend, precision=predictor.precision)
        if args.model_name:
            report["model_name"] = args.model_name
        print(json.dumps(report))


def _run_video(args: argparse.Namespace, predictor: Any) -> int:
    if args.legend:
        warn("--legend applies to --image_path overlays; the video is written without it")
    stats = segment_video(predictor, args.video_path, args.save_dir,
                          palette_array(predictor.deploy), args.batch_size)  # fmt: skip
    print(stats.summary())
    return 130 if stats.interrupted else 0


def run(args: argparse.Namespace) -> int:
    """Everything after parsing; user mistakes raise UsageError/ValueError/VideoError."""
    if not (args.image_path or args.video_path or args.benchmark):
        raise UsageError("give --image_path, --video_path or --benchmark")
    if args.image_path:
        list_images(args.image_path)  # a bad path fails before the model loads
    if args.video_path:
        check_source(args.video_path)
    export_dir_of(args)
    options = runtime_options(args)
    tmp_dir = None
    if args.enable_auto_tune:
        shape_file = args.auto_tuned_shape_file
        if shape_file is None:
            tmp_dir = tempfile.mkdtemp(prefix="auto_tune_")
            shape_file = Path(tmp_dir) / "auto_tune_tmp.pbtxt"
        options = auto_tune(lambda opts: make_predictor(args, opts), options,
                            _tuning_inputs(args), Path(shape_file), args.batch_size)  # fmt: skip
    try:
        predictor = make_predictor(args, options)
        if args.print_detail:
            _detail(predictor, options)
        if args.image_path:
            _run_images(args, predictor)
        elif args.video_path:
            return _run_video(args, predictor)
        else:
            result = _benchmark(args, predictor)
            del predictor  # Paddle prints the --profile report when the predictor is released
            gc.collect()
            sys.stdout.flush()
            print(json.dumps(result))  # the last line, also after a profile report
        return 0
    finally:
        if tmp_dir is not None:
            shutil.rmtree(tmp_dir, ignore_errors=True)


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Parse, run; user mistakes end with one ``infer.py: error:`` line and exit code 2."""
    args = parse_args(argv)
    try:
        return run(args)
    except (ValueError, VideoError, ImportError) as err:
        print(f"{PROG}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
