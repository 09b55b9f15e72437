"""Inference modes on (N, 3, H, W) inputs: plain, sliding window, multi-scale + flip, and the
paper's reduced-resolution protocol (STDC-Seg50/75). All return logits (N, K, H, W).
"""

from __future__ import annotations

import collections.abc
import math
from typing import Any, Optional, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

#: Input scale of each evaluation protocol. PaddleSeg's published STDC numbers are "full";
#: the paper's STDC1/2-Seg50 and Seg75 evaluate at 0.5 and 0.75 of 2048x1024.
EVAL_PRESETS = {"full": 1.0, "seg50": 0.5, "seg75": 0.75}


def model_logits(model: nn.Layer, x: paddle.Tensor) -> paddle.Tensor:
    """The first output of ``model(x)``; segmentation models return a list of logits."""
    out = model(x)
    if not isinstance(out, collections.abc.Sequence):
        raise TypeError(f"the model must return a list of logits, got {type(out).__name__}")
    return out[0]


def slide_logits(
    model: nn.Layer, x: paddle.Tensor, crop_size: Sequence[int], stride: Sequence[int]
) -> paddle.Tensor:
    """Average logits of overlapping ``crop_size`` = (w, h) windows moved by ``stride``."""
    h, w = x.shape[2:]
    cw, ch = crop_size
    sw, sh = stride
    if sw > cw or sh > ch:
        raise ValueError(f"stride {list(stride)} larger than crop {list(crop_size)} leaves gaps")
    rows = 1 if h <= ch else math.ceil((h - ch) / sh) + 1
    cols = 1 if w <= cw else math.ceil((w - cw) / sw) + 1
    total, count = None, paddle.zeros([1, 1, h, w], dtype="float32")
    for r in range(rows):
        for c in range(cols):
            y1, x1 = min(r * sh, max(h - ch, 0)), min(c * sw, max(w - cw, 0))
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            logit = model_logits(model, x[:, :, y1:y2, x1:x2]).astype("float32")
            pad = [x1, w - x2, y1, h - y2]
            padded = F.pad(logit, pad, mode="constant", value=0.0)
            total = padded if total is None else total + padded
            count = count + F.pad(paddle.ones([1, 1, y2 - y1, x2 - x1]), pad, value=0.0)
    return total / count


def _flip(x: paddle.Tensor, horizontal: bool, vertical: bool) -> paddle.Tensor:
    axes = ([3] if horizontal else []) + ([2] if vertical else [])
    return paddle.flip(x, axes) if axes else x


def _logits(model, x, is_slide, crop_size, stride) -> paddle.Tensor:
    if is_slide:
        if crop_size is None or stride is None:
            raise ValueError("sliding-window inference needs crop_size and stride")
        return slide_logits(model, x, crop_size, stride)
    return model_logits(model, x).astype("float32")


def aug_logits(
    model: nn.Layer,
    x: paddle.Tensor,
    scales: Union[float, Sequence[float]] = 1.0,
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    is_slide: bool = False,
    crop_size: Optional[Sequence[int]] = None,
    stride: Optional[Sequence[int]] = None,
) -> paddle.Tensor:
    """Mean logits over scales x flips, each resized back to the input size."""
    scales = [scales] if isinstance(scales, (int, float)) else list(scales)
    flips = [(False, False)]
    if flip_horizontal:
        flips.append((True, False))
    if flip_vertical:
        flips.append((False, True))
        if flip_horizontal:
            flips.append((True, True))
    h, w = x.shape[2:]
    total = None
    for scale in scales:
        size = [int(h * scale + 0.5), int(w * scale + 0.5)]
        xs = x if size == [h, w] else F.interpolate(x, size, mode="bilinear")
        for fh, fv in flips:
            logit = _flip(_logits(model, _flip(xs, fh, fv), is_slide, crop_size, stride), fh, fv)
            if list(logit.shape[2:]) != [h, w]:
                logit = F.interpolate(logit, [h, w], mode="bilinear")
            total = logit if total is None else total + logit
    return total / (len(scales) * len(flips))


def _as_int(v: Any) -> int:
    return int(v.numpy().reshape(-1)[0]) if hasattr(v, "numpy") else int(v)


def _trans_items(trans_info: Any) -> list:
    """Normalise PaddleSeg trans_info, collated by a DataLoader or not, to [(mode, (h, w))]."""
    items = []
    for mode, shape in trans_info or []:
        if isinstance(mode, (list, tuple)):
            mode = mode[0]
        items.append((str(mode), (_as_int(shape[0]), _as_int(shape[1]))))
    return items


def reverse_transform(
    logit: paddle.Tensor, trans_info: Any, mode: str = "bilinear"
) -> paddle.Tensor:
    """Undo val-time resizes and paddings (recorded in ``trans_info``) on (N, K, H, W) logits."""
    for op, (h, w) in reversed(_trans_items(trans_info)):
        if op == "resize":
            logit = F.interpolate(logit, [h, w], mode=mode)
        elif op == "padding":
            logit = logit[:, :, :h, :w]
        else:
            raise ValueError(f"unknown trans_info entry {op!r}")
    return logit


def infer_logits(
    model: nn.Layer,
    x: paddle.Tensor,
    trans_info: Any = None,
    *,
    eval_scale: float = 1.0,
    aug_eval: bool = False,
    scales: Union[float, Sequence[float]] = 1.0,
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    is_slide: bool = False,
    crop_size: Optional[Sequence[int]] = None,
    stride: Optional[Sequence[int]] = None,
) -> paddle.Tensor:
    """Logits (N, K, H0, W0) at the original image resolution, under any evaluation protocol.

    ``eval_scale`` < 1 resizes the input first (the paper's Seg50/Seg75) and the logits back
    to the input size before val transforms are undone.
    """
    size: Tuple[int, int] = tuple(x.shape[2:])
    if eval_scale != 1.0:
        scaled = [max(1, int(size[0] * eval_scale + 0.5)), max(1, int(size[1] * eval_scale + 0.5))]
        x = F.interpolate(x, scaled, mode="bilinear", align_corners=True)
    if aug_eval:
        logit = aug_logits(
            model, x, scales, flip_horizontal, flip_vertical, is_slide, crop_size, stride
        )
    else:
        logit = _logits(model, x, is_slide, crop_size, stride)
    if list(logit.shape[2:]) != list(size):
        logit = F.interpolate(logit, list(size), mode="bilinear", align_corners=True)
    return reverse_transform(logit, trans_info)


def describe_protocol(
    eval_scale: float = 1.0,
    aug_eval: bool = False,
    scales: Union[float, Sequence[float]] = 1.0,
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    is_slide: bool = False,
    **_: Any,
) -> str:
    """A label for reported numbers, e.g. 'full resolution', 'Seg50 (0.5x input), flip'."""
    names = {0.5: "Seg50 (0.5x input)", 0.75: "Seg75 (0.75x input)"}
    parts = [
        "full resolution" if eval_scale == 1.0 else names.get(eval_scale, f"{eval_scale}x input")
    ]
    if aug_eval:
        n_scales = 1 if isinstance(scales, (int, float)) else len(scales)
        if n_scales > 1:
            parts.append(f"multi-scale {list(scales)}")
        if flip_horizontal or flip_vertical:
            parts.append("flip")
    if is_slide:
        parts.append("sliding window")
    return ", ".join(parts)
