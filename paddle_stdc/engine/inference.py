"""Inference modes on (N, 3, H, W) inputs: plain, sliding window, multi-scale + flip, and the
paper's reduced-resolution protocol (STDC-Seg50/75). All return logits (N, K, H, W).
"""

from __future__ import annotations

import collections.abc
import math
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

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


@dataclass(frozen=True)
class EvalProtocol:
    """How logits are produced: input scale (Seg50/75), multi-scale/flip, sliding window.

    Field names are PaddleSeg's ``test_config`` keys plus ``eval_scale``.
    """

    eval_scale: float = 1.0
    aug_eval: bool = False
    scales: Union[float, Sequence[float]] = 1.0
    flip_horizontal: bool = False
    flip_vertical: bool = False
    is_slide: bool = False
    crop_size: Optional[Sequence[int]] = None
    stride: Optional[Sequence[int]] = None

    @classmethod
    def from_dict(cls, options: Dict[str, Any]) -> EvalProtocol:
        """Build from a ``test_config``-style dict; unknown keys are an error naming them."""
        unknown = set(options) - {f.name for f in fields(cls)}
        if unknown:
            raise KeyError(
                f"unknown evaluation option(s) {sorted(unknown)}; valid test_config keys: "
                f"{[f.name for f in fields(cls)]}"
            )
        return cls(**options)

    def scale_list(self) -> List[float]:
        return [self.scales] if isinstance(self.scales, (int, float)) else list(self.scales)

    def flips(self) -> List[Tuple[bool, bool]]:
        """(horizontal, vertical) flip combinations, the identity first."""
        combos = [(False, False)]
        if self.aug_eval and self.flip_horizontal:
            combos.append((True, False))
        if self.aug_eval and self.flip_vertical:
            combos.append((False, True))
            if self.flip_horizontal:
                combos.append((True, True))
        return combos

    def describe(self) -> str:
        """A label for reported numbers, e.g. 'full resolution', 'Seg50 (0.5x input), flip'."""
        names = {0.5: "Seg50 (0.5x input)", 0.75: "Seg75 (0.75x input)"}
        scale = self.eval_scale
        parts = ["full resolution" if scale == 1.0 else names.get(scale, f"{scale}x input")]
        if self.aug_eval and len(self.scale_list()) > 1:
            parts.append(f"multi-scale {self.scale_list()}")
        if len(self.flips()) > 1:
            parts.append("flip")
        if self.is_slide:
            parts.append(f"sliding window {list(self.crop_size)}/{list(self.stride)}")
        return ", ".join(parts)


def _logits(model: nn.Layer, x: paddle.Tensor, protocol: EvalProtocol) -> paddle.Tensor:
    if protocol.is_slide:
        if protocol.crop_size is None or protocol.stride is None:
            raise ValueError("sliding-window inference needs crop_size and stride")
        return slide_logits(model, x, protocol.crop_size, protocol.stride)
    return model_logits(model, x).astype("float32")


def aug_logits(model: nn.Layer, x: paddle.Tensor, protocol: EvalProtocol) -> paddle.Tensor:
    """Mean logits over the protocol's scales x flips, each resized back to the input size."""
    h, w = x.shape[2:]
    total, count = None, 0
    for scale in protocol.scale_list():
        size = [int(h * scale + 0.5), int(w * scale + 0.5)]
        xs = x if size == [h, w] else F.interpolate(x, size, mode="bilinear")
        for fh, fv in protocol.flips():
            logit = _flip(_logits(model, _flip(xs, fh, fv), protocol), fh, fv)
            if list(logit.shape[2:]) != [h, w]:
                logit = F.interpolate(logit, [h, w], mode="bilinear")
            total = logit if total is None else total + logit
            count += 1
    return total / count


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
    protocol: Optional[EvalProtocol] = None,
) -> paddle.Tensor:
    """Logits (N, K, H0, W0) at the original image resolution, under ``protocol``.

    ``eval_scale`` != 1 resizes the input first (the paper's Seg50/Seg75) and the logits back
    to the input size before val transforms are undone.
    """
    protocol = protocol or EvalProtocol()
    size = list(x.shape[2:])
    if protocol.eval_scale != 1.0:
        scaled = [max(1, int(d * protocol.eval_scale + 0.5)) for d in size]
        x = F.interpolate(x, scaled, mode="bilinear", align_corners=True)
    if protocol.aug_eval:
        logit = aug_logits(model, x, protocol)
    else:
        logit = _logits(model, x, protocol)
    if list(logit.shape[2:]) != size:
        logit = F.interpolate(logit, size, mode="bilinear", align_corners=True)
    return reverse_transform(logit, trans_info)
