"""Argument groups and set-up shared by the thin scripts in ``tools/``."""

from __future__ import annotations

import argparse
import logging
import sys
from types import TracebackType
from typing import Any, Dict, List, Optional, Sequence, Type

import numpy as np
import paddle

from deploy.images import ImageListError
from paddle_stdc.data.datasets import DataError
from paddle_stdc.data.palettes import palette_for
from paddle_stdc.engine.inference import EVAL_PRESETS
from paddle_stdc.engine.logging import log_class_table
from paddle_stdc.engine.validate import ConfigError, validate_config
from paddle_stdc.utils import quiet
from paddle_stdc.utils.download import WeightsUnavailableError

logger = logging.getLogger("paddle_stdc")

#: Mistakes of the user (config, data, paths, flags), reported as one line, not a traceback.
USER_ERRORS = (ConfigError, DataError, ImageListError, WeightsUnavailableError)


def one_line(err: BaseException) -> str:
    """An exception's message on one line."""
    return " ".join(str(err).split()) or type(err).__name__


def _user_error_hook(
    kind: Type[BaseException], value: BaseException, tb: Optional[TracebackType]
) -> None:
    if issubclass(kind, USER_ERRORS):
        sys.stderr.write(f"error: {one_line(value)}\n")
        sys.stderr.flush()
    else:
        sys.__excepthook__(kind, value, tb)


def report_user_errors() -> None:
    """Make an uncaught user error (:data:`USER_ERRORS`: config, ``--image_path``, weights)
    print ``error: <message>`` on one line (no traceback, no chained cause); exit status 1."""
    if sys.excepthook is sys.__excepthook__:
        sys.excepthook = _user_error_hook


def setup_logging(level: int = logging.INFO, verbose: bool = False) -> None:
    """Set up a tool's process: ``paddle_stdc`` messages to stdout as ``time [LEVEL] message``,
    and user errors as one line on stderr (:func:`report_user_errors`). ``verbose`` (or
    ``level`` DEBUG) brings back the notices :mod:`paddle_stdc.utils.quiet` holds back."""
    report_user_errors()
    quiet.set_verbose(verbose or level <= logging.DEBUG)
    log = logging.getLogger("paddle_stdc")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def add_verbose_arg(parser: argparse.ArgumentParser) -> None:
    """--verbose: show the notices :mod:`paddle_stdc.utils.quiet` holds back by default."""
    parser.add_argument(
        "--verbose", action="store_true",
        help="also show the notices held back by default (Paddle's ccache and OMP_NUM_THREADS "
        "notices, PaddleSeg's num_classes notice)",
    )  # fmt: skip


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Flags every tool shares with PaddleSeg: --config, --device, --opts; and --verbose."""
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument(
        "--device", default=None, help="cpu, gpu, gpu:0 ... (default: gpu when available)"
    )
    parser.add_argument(
        "--opts", nargs="+", default=None, metavar="KEY=VALUE",
        help="override config keys, e.g. --opts batch_size=4 model.backbone.pretrained=None",
    )  # fmt: skip
    add_verbose_arg(parser)


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1 (a usage error names the flag otherwise)."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def add_cpu_threads_arg(parser: argparse.ArgumentParser) -> None:
    """``--cpu_threads N``: compute threads on CPU (default: every core this process may use,
    its CPU affinity and cgroup quota, less the data-loader workers; or OMP_NUM_THREADS)."""
    parser.add_argument(
        "--cpu_threads", type=positive_int, default=None, metavar="N",
        help="compute threads on CPU (default: OMP_NUM_THREADS if set, else the cores this "
        "process may use (CPU affinity, cgroup quota) less --num_workers)",
    )  # fmt: skip


def add_trained_model_args(
    parser: argparse.ArgumentParser, aug_flags: Sequence[str] = ("--aug_eval",)
) -> None:
    """The flags of tools that run a trained model: common ones, --model_path, --cpu_threads,
    evaluation
    (``aug_flags``: the spellings of PaddleSeg's augmentation switch, e.g. ``--aug_pred``)."""
    add_common_args(parser)
    parser.add_argument("--model_path", required=True, help="model.pdparams (path or URL)")
    add_cpu_threads_arg(parser)
    add_eval_args(parser, aug_flags)


def load_builder(args: argparse.Namespace, default_device: Optional[str] = None):
    """Set up logging and device, load and validate ``--config`` (with ``--opts``) for
    inference; returns a :class:`~paddle_stdc.engine.config.Builder` (nothing built yet)."""
    from paddle_stdc.engine.config import Builder, load_config

    setup_logging(verbose=getattr(args, "verbose", False))
    set_device(args.device or default_device)
    cfg = load_config(args.config, opts=opts_list(args.opts), pretrained=False)
    validate_config(cfg, for_training=False)
    return Builder(cfg)


def load_trained(args: argparse.Namespace):
    """:func:`load_builder`, then build the config's model and load ``--model_path`` strictly.

    Returns the :class:`~paddle_stdc.engine.config.Builder` (model, val dataset, transforms).
    """
    from paddle_stdc.weights import load_pretrained

    builder = load_builder(args)
    load_pretrained(builder.model, args.model_path, strict=True)
    return builder


def add_eval_args(
    parser: argparse.ArgumentParser, aug_flags: Sequence[str] = ("--aug_eval",)
) -> None:
    """PaddleSeg's evaluation flags plus --eval_scale for the paper's Seg50/Seg75 protocol.

    As in PaddleSeg, ``--scales`` and the flips apply only with the augmentation switch
    (``--aug_eval`` in val, ``--aug_pred`` in predict), the window only with ``--is_slide``.
    """
    parser.add_argument(
        *aug_flags, dest="aug_eval", action="store_true",
        help="multi-scale (--scales) and/or flip (--flip_horizontal/--flip_vertical)",
    )  # fmt: skip
    parser.add_argument("--scales", nargs="+", type=float, default=None, help="default: 1.0")
    parser.add_argument("--flip_horizontal", action="store_true")
    parser.add_argument("--flip_vertical", action="store_true")
    parser.add_argument("--is_slide", action="store_true", help="sliding-window inference")
    parser.add_argument("--crop_size", nargs=2, type=int, default=None, metavar=("W", "H"))
    parser.add_argument("--stride", nargs=2, type=int, default=None, metavar=("W", "H"))
    parser.add_argument(
        "--eval_scale", default=None,
        help=f"input scale, or a preset {sorted(EVAL_PRESETS)} (seg50 = 0.5: the paper's "
        "STDC-Seg50; PaddleSeg's published numbers are at full resolution)",
    )  # fmt: skip


def eval_kwargs(args: argparse.Namespace, test_config: Optional[Dict[str, Any]] = None) -> Dict:
    """Evaluation options: the config's ``test_config`` overridden by explicit flags."""
    kw: Dict[str, Any] = dict(test_config or {})
    if args.aug_eval:
        kw.update(
            aug_eval=True,
            scales=list(args.scales or [1.0]),
            flip_horizontal=args.flip_horizontal,
            flip_vertical=args.flip_vertical,
        )
    elif args.scales is not None or args.flip_horizontal or args.flip_vertical:
        logger.warning(
            "--scales/--flip_horizontal/--flip_vertical are ignored without the augmentation "
            "switch (--aug_eval in val.py, --aug_pred in predict.py), as in PaddleSeg"
        )
    if not args.is_slide and (args.crop_size or args.stride):
        logger.warning("--crop_size/--stride are ignored without --is_slide, as in PaddleSeg")
    if args.is_slide:
        if not (args.crop_size and args.stride):
            raise SystemExit("--is_slide needs --crop_size W H and --stride W H")
        kw.update(is_slide=True, crop_size=list(args.crop_size), stride=list(args.stride))
    if args.eval_scale is not None:
        kw["eval_scale"] = parse_eval_scale(args.eval_scale)
    return kw


def parse_eval_scale(value: Any) -> float:
    """``seg50``/``seg75``/``full`` or a number in (0, 4]."""
    key = str(value).lower()
    if key in EVAL_PRESETS:
        return float(EVAL_PRESETS[key])
    try:
        scale = float(key)
    except ValueError:
        raise SystemExit(
            f"--eval_scale must be a number or one of {sorted(EVAL_PRESETS)}"
        ) from None
    if not 0 < scale <= 4:
        raise SystemExit(f"--eval_scale must be in (0, 4], got {scale}")
    return scale


def set_device(device: Optional[str]) -> str:
    """Select the device; default GPU when Paddle was built with CUDA and one is visible."""
    if device is None:
        device = (
            "gpu"
            if paddle.device.is_compiled_with_cuda() and paddle.device.cuda.device_count()
            else "cpu"
        )
    paddle.set_device(device)
    return device


def opts_list(opts: Optional[List[str]]) -> List[str]:
    return list(opts) if opts else []


def parse_custom_color(colors: Optional[Sequence[int]]) -> Optional[np.ndarray]:
    """PaddleSeg's ``--custom_color R G B R G B ...`` as (n, 3) uint8 rows (None if not given);
    a count that is not a multiple of 3, or a value outside 0..255, is a one-line error."""
    if not colors:
        return None
    if len(colors) % 3:
        raise SystemExit(
            f"--custom_color takes R G B per class (a multiple of 3 numbers), got {len(colors)}: "
            f"{' '.join(map(str, colors))}"
        )
    bad = [c for c in colors if not 0 <= c <= 255]
    if bad:
        raise SystemExit(f"--custom_color values must be in 0..255, got {bad[0]}")
    return np.asarray(colors, dtype=np.uint8).reshape(-1, 3)


def custom_palette(palette: np.ndarray, rows: Optional[np.ndarray]) -> np.ndarray:
    """Class i gets ``rows[i]`` (from :func:`parse_custom_color`), the other classes keep
    ``palette``'s colours, as PaddleSeg does with ``--custom_color``."""
    if rows is None or not len(rows):
        return palette
    out = np.array(palette, dtype=np.uint8, copy=True)
    if len(out) < len(rows):
        out = np.concatenate([out, np.zeros((len(rows) - len(out), 3), np.uint8)])
    out[: len(rows)] = rows
    return out


def prediction_palette(
    num_classes: int, dataset: Optional[str], spec: Any, rows: Optional[np.ndarray] = None
) -> np.ndarray:
    """The palette of ``--palette`` (or the config's / dataset's), then ``--custom_color``."""
    try:
        palette = palette_for(num_classes, dataset, spec)
    except (OSError, ValueError) as err:
        raise SystemExit(f"--palette {spec}: {one_line(err)}") from None
    return custom_palette(palette, rows)


def resolve_output_op(args: argparse.Namespace) -> str:
    """``--output_op``, or PaddleSeg's ``--without_argmax`` / ``--with_softmax``.

    As PaddleSeg's export: softmax (if asked) is applied first, then argmax unless
    ``--without_argmax``; so ``--with_softmax`` alone still exports argmax class ids.
    """
    legacy = "argmax"
    if args.without_argmax:
        legacy = "softmax" if args.with_softmax else "none"
    if args.output_op is None:
        if args.with_softmax and not args.without_argmax:
            logger.info("--with_softmax without --without_argmax: softmax then argmax, i.e. "
                        "class ids (add --without_argmax for probabilities)")  # fmt: skip
        return legacy
    if (args.without_argmax or args.with_softmax) and args.output_op != legacy:
        raise SystemExit(
            f"--output_op {args.output_op} contradicts --without_argmax/--with_softmax "
            f"(which mean --output_op {legacy}); give one of them"
        )
    return args.output_op


def log_eval_result(result: Any, class_names: Optional[Sequence[str]] = None) -> None:
    """The per-class table, the summary line, and PaddleSeg 2.8's mIoU beside ours."""
    log_class_table(result.metrics, class_names)
    logger.info("[EVAL] %s", result.summary())
    logger.info("[EVAL] %s", miou_comparison(result.metrics))


def miou_comparison(metrics: Any) -> str:
    """Our mIoU (over present classes) and PaddleSeg's (absent classes count as 0)."""
    iou = np.asarray(metrics.class_iou, dtype=np.float64)
    absent = int(np.isnan(iou).sum())
    return (
        f"mIoU: {metrics.miou:.4f} over the {len(iou) - absent} classes present; "
        f"PaddleSeg 2.8 mIoU: {metrics.miou_paddleseg:.4f} (counts the {absent} absent "
        "classes as IoU 0)"
    )
