"""Argument groups and set-up shared by the thin scripts in ``tools/``."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, Dict, List, Optional

import paddle

from paddle_stdc.engine.inference import EVAL_PRESETS


def setup_logging(level: int = logging.INFO) -> None:
    """Log ``paddle_stdc`` messages to stdout as ``time [LEVEL] message``."""
    log = logging.getLogger("paddle_stdc")
    if not log.handlers:
        handler = logging.StreamHandler(sys.stdout)
        handler.setFormatter(logging.Formatter("%(asctime)s [%(levelname)s] %(message)s"))
        log.addHandler(handler)
    log.setLevel(level)
    log.propagate = False


def add_common_args(parser: argparse.ArgumentParser) -> None:
    """Flags every tool shares with PaddleSeg: --config, --device, --opts."""
    parser.add_argument("--config", required=True, help="YAML config file")
    parser.add_argument(
        "--device", default=None, help="cpu, gpu, gpu:0 ... (default: gpu when available)"
    )
    parser.add_argument(
        "--opts", nargs="+", default=None, metavar="KEY=VALUE",
        help="override config keys, e.g. --opts batch_size=4 model.backbone.pretrained=None",
    )  # fmt: skip


def add_trained_model_args(parser: argparse.ArgumentParser) -> None:
    """The flags of tools that run a trained model: common ones, --model_path, evaluation."""
    add_common_args(parser)
    parser.add_argument("--model_path", required=True, help="model.pdparams (path or URL)")
    add_eval_args(parser)


def load_trained(args: argparse.Namespace):
    """Set up logging and device, build the config's model and load ``--model_path`` strictly.

    Returns the :class:`~paddle_stdc.engine.config.Builder` (model, val dataset, transforms).
    """
    from paddle_stdc.engine.config import Builder, load_config
    from paddle_stdc.weights import load_pretrained

    setup_logging()
    set_device(args.device)
    builder = Builder(load_config(args.config, opts=opts_list(args.opts), pretrained=False))
    load_pretrained(builder.model, args.model_path, strict=True)
    return builder


def add_eval_args(parser: argparse.ArgumentParser) -> None:
    """PaddleSeg's evaluation flags plus --eval_scale for the paper's Seg50/Seg75 protocol."""
    parser.add_argument("--aug_eval", action="store_true", help="multi-scale and/or flip")
    parser.add_argument("--scales", nargs="+", type=float, default=[1.0])
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
        kw.update(aug_eval=True, scales=list(args.scales), flip_horizontal=args.flip_horizontal,
                  flip_vertical=args.flip_vertical)  # fmt: skip
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
