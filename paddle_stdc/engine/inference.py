"""Inference modes on (N, 3, H, W) inputs, all in Paddle ops and all returning float32 logits
(N, K, H, W): plain, sliding window, multi-scale + flip, and the paper's reduced-resolution
protocol (STDC-Seg50/75).

PaddleSeg 2.8's ``core.infer`` does the same job but round-trips the sliding window through
numpy and indexes trans_info in ways Paddle 3's 0-D tensors break; this module keeps the
semantics (window placement, flip order, ``aug_inference`` interpolation) with its own code.
"""

from __future__ import annotations

import collections.abc
import math
from dataclasses import dataclass, fields
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

#: Input scale of each evaluation protocol. PaddleSeg's published STDC numbers are "full"
#: (2048x1024); the paper's STDC1/2-Seg50 and Seg75 feed 0.5x and 0.75x of that.
EVAL_PRESETS = {"full": 1.0, "seg50": 0.5, "seg75": 0.75}

Size2 = Sequence[int]


def _pair(value: Optional[Size2], name: str) -> Optional[Tuple[int, int]]:
    """(w, h) as a tuple of positive ints, or None."""
    if value is None:
        return None
    items = tuple(int(v) for v in value)
    if len(items) != 2 or min(items) <= 0:
        raise ValueError(f"{name} must be two positive ints (w, h), got {value!r}")
    return items


def _scale_tuple(scales: Union[float, Sequence[float]]) -> Tuple[float, ...]:
    items = (float(scales),) if isinstance(scales, (int, float)) else tuple(map(float, scales))
    if not items or min(items) <= 0:
        raise ValueError(f"scales must be positive numbers, got {scales!r}")
    return items


def flip_combinations(horizontal: bool, vertical: bool) -> List[Tuple[bool, bool]]:
    """(horizontal, vertical) flips to average over, identity first (PaddleSeg's order)."""
    combos = [(False, False)]
    if horizontal:
        combos.append((True, False))
    if vertical:
        combos.append((False, True))
        if horizontal:
            combos.append((True, True))
    return combos


@dataclass(frozen=True)
class EvalProtocol:
    """How logits are produced: input scale (Seg50/75), multi-scale/flip, sliding window.

    Field names are PaddleSeg's ``test_config`` keys plus ``eval_scale``. As in PaddleSeg,
    ``scales`` and the flips only apply when ``aug_eval`` is set. Values are validated and
    normalised (``scales`` to a tuple of floats, ``crop_size``/``stride`` to (w, h) tuples).
    """

    eval_scale: float = 1.0
    aug_eval: bool = False
    scales: Union[float, Sequence[float]] = 1.0
    flip_horizontal: bool = False
    flip_vertical: bool = False
    is_slide: bool = False
    crop_size: Optional[Size2] = None
    stride: Optional[Size2] = None

    def __post_init__(self) -> None:
        if not float(self.eval_scale) > 0:
            raise ValueError(f"eval_scale must be > 0, got {self.eval_scale!r}")
        object.__setattr__(self, "eval_scale", float(self.eval_scale))
        object.__setattr__(self, "scales", _scale_tuple(self.scales))
        object.__setattr__(self, "crop_size", _pair(self.crop_size, "crop_size"))
        object.__setattr__(self, "stride", _pair(self.stride, "stride"))
        if self.is_slide and (self.crop_size is None or self.stride is None):
            raise ValueError("sliding-window inference (is_slide) needs crop_size and stride")

    @classmethod
    def from_dict(cls, options: Dict[str, Any]) -> EvalProtocol:
        """Build from a ``test_config``-style dict; unknown keys are an error naming them."""
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(options) - set(valid))
        if unknown:
            raise KeyError(f"unknown evaluation option(s) {unknown}; valid keys: {valid}")
        return cls(**options)

    def scale_list(self) -> List[float]:
        """Multi-scale factors in effect ([1.0] unless ``aug_eval``)."""
        return list(self.scales) if self.aug_eval else [1.0]

    def flips(self) -> List[Tuple[bool, bool]]:
        """Flip combinations in effect (identity only unless ``aug_eval``)."""
        if not self.aug_eval:
            return [(False, False)]
        return flip_combinations(self.flip_horizontal, self.flip_vertical)

    def describe(self) -> str:
        """A label for reported numbers, e.g. 'full resolution', 'Seg50 (0.5x input), flip'."""
        names = {0.5: "Seg50 (0.5x input)", 0.75: "Seg75 (0.75x input)"}
        scale = self.eval_scale
        parts = ["full resolution" if scale == 1.0 else names.get(scale, f"{scale:g}x input")]
        if self.scale_list() != [1.0]:
            parts.append("multi-scale [" + ", ".join(f"{s:g}" for s in self.scale_list()) + "]")
        flips = self.flips()[1:]
        if flips:
            kinds = [("h" if fh else "") + ("v" if fv else "") for fh, fv in flips]
            parts.append("flip" if kinds == ["h"] else f"flip ({'+'.join(kinds)})")
        if self.is_slide:
            (cw, ch), (sw, sh) = self.crop_size, self.stride
            parts.append(f"sliding window {cw}x{ch} stride {sw}x{sh}")
        return ", ".join(parts)


def model_logits(model: nn.Layer, x: paddle.Tensor) -> paddle.Tensor:
    """First output of ``model(x)`` as float32 (N, K, h, w); segmentation models return a list.

    Models with ``data_format == 'NHWC'`` get an NHWC input and their output is transposed back.
    """
    nhwc = getattr(model, "data_format", "NCHW") == "NHWC"
    out = model(x.transpose([0, 2, 3, 1]) if nhwc else x)
    if not isinstance(out, collections.abc.Sequence) or isinstance(out, str):
        raise TypeError(
            f"the model must return a list/tuple of logits (PaddleSeg convention), "
            f"got {type(out).__name__}"
        )
    logit = out[0]
    if nhwc:
        logit = logit.transpose([0, 3, 1, 2])
    return logit if logit.dtype == paddle.float32 else logit.astype("float32")


def _window_starts(size: int, crop: int, step: int) -> List[int]:
    """Window starts along one axis; the last window is aligned to the border."""
    if size <= crop:
        return [0]
    count = math.ceil((size - crop) / step) + 1
    return [min(i * step, size - crop) for i in range(count)]


def _coverage(size: int, crop: int, starts: List[int]) -> List[int]:
    """How many windows cover each position along one axis."""
    counts = [0] * size
    for a in starts:
        for i in range(a, min(a + crop, size)):
            counts[i] += 1
    return counts


def slide_logits(
    model: nn.Layer, x: paddle.Tensor, crop_size: Size2, stride: Size2
) -> paddle.Tensor:
    """Average logits of ``crop_size`` = (w, h) windows moved by ``stride`` = (w, h).

    Windows follow PaddleSeg: row/column starts at multiples of the stride, the last one
    shifted to end at the border; an image smaller than the crop is one window. A stride
    that leaves pixels uncovered is a ValueError (raised before the model runs).
    """
    (cw, ch), (sw, sh) = _pair(crop_size, "crop_size"), _pair(stride, "stride")
    n, _, h, w = x.shape
    ys, xs = _window_starts(h, ch, sh), _window_starts(w, cw, sw)
    for starts, crop, size, axis in ((ys, ch, h, "height"), (xs, cw, w, "width")):
        if any(b > a + crop for a, b in zip(starts, starts[1:])):
            raise ValueError(
                f"sliding window leaves gaps along the {axis}: stride {tuple(stride)} is larger "
                f"than crop_size {tuple(crop_size)} for an image of {size} pixels"
            )
    total: Optional[paddle.Tensor] = None
    for y1 in ys:
        for x1 in xs:
            y2, x2 = min(y1 + ch, h), min(x1 + cw, w)
            logit = model_logits(model, x[:, :, y1:y2, x1:x2])
            if list(logit.shape[2:]) != [y2 - y1, x2 - x1]:
                logit = F.interpolate(logit, [y2 - y1, x2 - x1], mode="bilinear")
            if total is None:
                total = paddle.zeros([n, logit.shape[1], h, w], dtype="float32")
            total[:, :, y1:y2, x1:x2] = total[:, :, y1:y2, x1:x2] + logit
    # The windows form a grid: per-pixel count = (windows covering y) x (windows covering x).
    rows = paddle.to_tensor(_coverage(h, ch, ys), dtype="float32").reshape([1, 1, h, 1])
    cols = paddle.to_tensor(_coverage(w, cw, xs), dtype="float32").reshape([1, 1, 1, w])
    return total / (rows * cols)


def _flip(x: paddle.Tensor, horizontal: bool, vertical: bool) -> paddle.Tensor:
    axes = ([3] if horizontal else []) + ([2] if vertical else [])
    return paddle.flip(x, axes) if axes else x


def _single_logits(
    model: nn.Layer,
    x: paddle.Tensor,
    is_slide: bool,
    crop_size: Optional[Size2],
    stride: Optional[Size2],
) -> paddle.Tensor:
    if is_slide:
        if crop_size is None or stride is None:
            raise ValueError("sliding-window inference (is_slide) needs crop_size and stride")
        return slide_logits(model, x, crop_size, stride)
    return model_logits(model, x)


def aug_logits(
    model: nn.Layer,
    x: paddle.Tensor,
    scales: Union[float, Sequence[float]] = (1.0,),
    flip_horizontal: bool = False,
    flip_vertical: bool = False,
    is_slide: bool = False,
    crop_size: Optional[Size2] = None,
    stride: Optional[Size2] = None,
) -> paddle.Tensor:
    """Mean logits over ``scales`` x flips, each resized back to the input size.

    Like PaddleSeg's ``aug_inference``: the input is resized to ``round(size * scale)`` and
    the logits back to the input size, both bilinear with align_corners=False.
    """
    h, w = x.shape[2:]
    combos = flip_combinations(flip_horizontal, flip_vertical)
    total: Optional[paddle.Tensor] = None
    count = 0
    for scale in _scale_tuple(scales):
        size = [int(h * scale + 0.5), int(w * scale + 0.5)]
        scaled = x if size == [h, w] else F.interpolate(x, size, mode="bilinear")
        for fh, fv in combos:
            logit = _single_logits(model, _flip(scaled, fh, fv), is_slide, crop_size, stride)
            logit = _flip(logit, fh, fv)
            if list(logit.shape[2:]) != [h, w]:
                logit = F.interpolate(logit, [h, w], mode="bilinear")
            total = logit if total is None else total + logit
            count += 1
    return total / count


def _as_int(value: Any, what: str) -> int:
    """An int from a python/numpy number or a DataLoader-collated tensor of shape [N]."""
    if hasattr(value, "numpy"):
        flat = value.numpy().reshape(-1).tolist()
        if not flat or any(v != flat[0] for v in flat):
            raise ValueError(
                f"trans_info {what} differs across the batch ({flat}); evaluate with batch size 1"
            )
        return int(flat[0])
    return int(value)


def _trans_items(trans_info: Any) -> List[Tuple[str, Tuple[int, int]]]:
    """Normalise PaddleSeg trans_info, collated by a DataLoader or not, to [(op, (h, w))].

    A sample has ``[('padding', (h, w)), ...]``; collation turns each entry into
    ``[['padding'], [Tensor([h]), Tensor([w])]]`` (one list element per batch sample).
    """
    items = []
    for entry in trans_info or []:
        op, shape = entry[0], entry[1]
        if isinstance(op, (list, tuple)):
            if any(o != op[0] for o in op):
                raise ValueError(f"trans_info ops differ across the batch: {list(op)}")
            op = op[0]
        items.append((str(op), (_as_int(shape[0], "height"), _as_int(shape[1], "width"))))
    return items


def reverse_transform(
    logit: paddle.Tensor, trans_info: Any, mode: str = "bilinear"
) -> paddle.Tensor:
    """Undo val-time transforms recorded in ``trans_info`` on (N, K, H, W) logits.

    Entries are undone last to first: 'padding' crops back to the recorded (h, w) (top-left,
    as PaddleSeg pads bottom/right), 'resize' interpolates to it (align_corners=False).
    """
    for op, (h, w) in reversed(_trans_items(trans_info)):
        if op == "resize":
            if list(logit.shape[2:]) != [h, w]:
                logit = F.interpolate(logit, [h, w], mode=mode)
        elif op == "padding":
            logit = logit[:, :, :h, :w]
        else:
            raise ValueError(f"unknown trans_info entry {op!r} (expected 'resize' or 'padding')")
    return logit


def infer_logits(
    model: nn.Layer,
    x: paddle.Tensor,
    trans_info: Any = None,
    protocol: Optional[EvalProtocol] = None,
    **options: Any,
) -> paddle.Tensor:
    """Float32 logits (N, K, H0, W0) at the original (label) resolution.

    Options come either as keywords (the fields of :class:`EvalProtocol`) or as one
    :class:`EvalProtocol` (not both).
    ``eval_scale`` != 1 is the paper's Seg50/Seg75: the input is resized to
    ``floor(size * eval_scale)`` and the logits back to the input size, both bilinear with
    align_corners=True as in the STDC-Seg reference evaluation. Then ``trans_info`` (val
    paddings/resizes) is undone.
    """
    from_keywords = EvalProtocol(**options)
    if protocol is None:
        protocol = from_keywords
    elif from_keywords != EvalProtocol():
        raise TypeError("pass evaluation options either as `protocol` or as keywords, not both")

    size = list(x.shape[2:])
    resized = protocol.eval_scale != 1.0
    if resized:
        scaled = [max(1, int(d * protocol.eval_scale)) for d in size]
        x = F.interpolate(x, scaled, mode="bilinear", align_corners=True)
    if protocol.aug_eval:
        logit = aug_logits(
            model,
            x,
            scales=protocol.scales,
            flip_horizontal=protocol.flip_horizontal,
            flip_vertical=protocol.flip_vertical,
            is_slide=protocol.is_slide,
            crop_size=protocol.crop_size,
            stride=protocol.stride,
        )
    else:
        logit = _single_logits(model, x, protocol.is_slide, protocol.crop_size, protocol.stride)
    if list(logit.shape[2:]) != size:
        logit = F.interpolate(logit, size, mode="bilinear", align_corners=resized)
    return reverse_transform(logit, trans_info)
