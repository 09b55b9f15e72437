"""Fast training transforms: PaddleSeg 2.8's names, config keys and semantics, on uint8 images.

PaddleSeg 2.8's training pipeline resizes and crops float32 images (four bytes a channel, so
a 2x scale of a 2048x1024 image writes 100 MB) and runs ``RandomDistort`` through PIL
(float -> uint8 -> PIL -> float per sample). The classes here are registered over PaddleSeg's
``ResizeStepScaling``, ``RandomPaddingCrop``, ``RandomHorizontalFlip``, ``RandomDistort`` and
``Normalize`` (so ``type: RandomDistort`` in a config builds ours after ``import paddle_stdc``)
and do the same thing on uint8 with OpenCV; ``Normalize``, which every config ends with, is
the one float conversion.

Same semantics as PaddleSeg, including the random draws: every transform consumes Python's
``random`` and NumPy's global generator in the same order and with the same calls, so the
same seeds give the same scale, crop offset, flip and colour-jitter decisions and factors.
Labels (and every other ``gt_fields`` entry) go through exactly the same nearest-neighbour
OpenCV calls, so they equal PaddleSeg's bit for bit. Image pixels can differ from PaddleSeg's
by rounding only: bilinear resizing rounds to uint8 (PaddleSeg keeps float), the crop pads
with 128 instead of 127.5, and the colour jitter uses lookup tables / OpenCV colour
conversions that reproduce PIL's ImageEnhance formulas to within a grey level or two.

Input: the float32 image PaddleSeg's ``Compose`` reads (values in [0, 255]) or a uint8 one,
which this project's datasets hand over when :func:`takes_uint8` holds for their pipeline;
a float image outside [0, 255] (already normalised, HDR ...) is transformed in float instead.
``RandomPaddingCrop(category_max_ratio < 1)`` crops the image with the accepted window (PaddleSeg
2.8 stores the cropped *label* into ``img`` there, a bug).
"""

from __future__ import annotations

import random
from typing import Any, Dict, List, Sequence

import cv2
import numpy as np
from paddleseg.transforms import Compose

from paddle_stdc.registry import register_transform

__all__ = [
    "ResizeStepScaling",
    "RandomPaddingCrop",
    "RandomHorizontalFlip",
    "RandomDistort",
    "Normalize",
    "to_uint8",
    "takes_uint8",
]


def to_uint8(img: np.ndarray) -> np.ndarray:
    """A uint8 copy of an 8-bit-valued image (float in [0, 255] is rounded); else unchanged."""
    if img.dtype == np.uint8:
        return img
    if img.size and (np.issubdtype(img.dtype, np.floating) or np.issubdtype(img.dtype, np.integer)):
        lo, hi = float(img.min()), float(img.max())
        if lo >= 0.0 and hi <= 255.0:
            if img.dtype == np.float32 and img.ndim in (2, 3) and img.shape[-1] <= 4:
                return cv2.convertScaleAbs(img)  # one SIMD pass: round + saturate
            return np.rint(img).astype(np.uint8)
    return img


def _gt_keys(data: Dict) -> List[str]:
    return list(data.get("gt_fields", []))


@register_transform
class ResizeStepScaling:
    """Scale image and labels by a factor drawn from ``min:step:max`` (PaddleSeg's semantics).

    Args:
        min_scale_factor, max_scale_factor: range of the scale factor. Default: 0.75, 1.25.
        scale_step_size: spacing of the candidate factors; 0 draws uniformly. Default: 0.25.
    """

    def __init__(self, min_scale_factor=0.75, max_scale_factor=1.25, scale_step_size=0.25):
        if min_scale_factor > max_scale_factor:
            raise ValueError(
                "min_scale_factor must be less than max_scale_factor, but they are "
                f"{min_scale_factor} and {max_scale_factor}."
            )
        self.min_scale_factor = min_scale_factor
        self.max_scale_factor = max_scale_factor
        self.scale_step_size = scale_step_size

    def draw_scale(self) -> float:
        """One scale factor, with exactly PaddleSeg's calls to NumPy's global generator."""
        if self.min_scale_factor == self.max_scale_factor:
            return float(self.min_scale_factor)
        if self.scale_step_size == 0:
            return float(np.random.uniform(self.min_scale_factor, self.max_scale_factor))
        num_steps = int((self.max_scale_factor - self.min_scale_factor) / self.scale_step_size + 1)
        factors = np.linspace(self.min_scale_factor, self.max_scale_factor, num_steps).tolist()
        np.random.shuffle(factors)
        return float(factors[0])

    def __call__(self, data: Dict) -> Dict:
        scale = self.draw_scale()
        img = to_uint8(data["img"])
        w = int(round(scale * img.shape[1]))
        h = int(round(scale * img.shape[0]))
        data["img"] = cv2.resize(img, (w, h), interpolation=cv2.INTER_LINEAR)
        for key in _gt_keys(data):
            data[key] = cv2.resize(data[key], (w, h), interpolation=cv2.INTER_NEAREST)
        return data


@register_transform
class RandomPaddingCrop:
    """Random crop of ``crop_size`` (width, height); pads bottom/right first if smaller.

    Args as PaddleSeg's: ``crop_size``, ``im_padding_value`` (127.5; 128 on uint8 images),
    ``label_padding_value`` (255), ``category_max_ratio`` (1.0: no check), ``ignore_index``,
    ``loop_times``.
    """

    def __init__(
        self,
        crop_size=(512, 512),
        im_padding_value=127.5,
        label_padding_value=255,
        category_max_ratio=1.0,
        ignore_index=255,
        loop_times=10,
    ):
        if isinstance(crop_size, (list, tuple)):
            if len(crop_size) != 2:
                raise ValueError(
                    f"crop_size is a list or tuple: it should have 2 elements, got {crop_size}."
                )
        else:
            raise TypeError(f"crop_size should be a list or tuple, got {type(crop_size)}.")
        if category_max_ratio <= 0:
            raise ValueError(f"category_max_ratio must be > 0, got {category_max_ratio}.")
        if loop_times <= 0:
            raise ValueError(f"loop_times must be > 0, got {loop_times}.")
        self.crop_size = tuple(reversed(crop_size))  # (h, w)
        self.im_padding_value = im_padding_value
        self.label_padding_value = label_padding_value
        self.category_max_ratio = category_max_ratio
        self.ignore_index = ignore_index
        self.loop_times = loop_times

    def _crop_window(self, shape) -> tuple:
        margin_h = max(shape[0] - self.crop_size[0], 0)
        margin_w = max(shape[1] - self.crop_size[1], 0)
        y = np.random.randint(0, margin_h + 1)
        x = np.random.randint(0, margin_w + 1)
        return x, y, x + self.crop_size[1], y + self.crop_size[0]

    def _pad(self, data: Dict) -> Dict:
        h, w = data["img"].shape[:2]
        pad_h, pad_w = max(self.crop_size[0] - h, 0), max(self.crop_size[1] - w, 0)
        if pad_h == 0 and pad_w == 0:
            return data
        img = data["img"]
        channels = 1 if img.ndim == 2 else img.shape[2]
        data["img"] = cv2.copyMakeBorder(
            img, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(self.im_padding_value,) * channels
        )
        for key in _gt_keys(data):
            data[key] = cv2.copyMakeBorder(
                data[key], 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=self.label_padding_value
            )
        return data

    def __call__(self, data: Dict) -> Dict:
        data["img"] = to_uint8(data["img"])
        if tuple(data["img"].shape[:2]) == self.crop_size:
            return data
        data = self._pad(data)
        shape = data["img"].shape[:2]
        x1, y1, x2, y2 = self._crop_window(shape)
        if self.category_max_ratio < 1.0:
            for _ in range(self.loop_times):
                patch = data["label"][y1:y2, x1:x2]
                labels, counts = np.unique(patch, return_counts=True)
                counts = counts[labels != self.ignore_index]
                if len(counts) > 1 and np.max(counts) / np.sum(counts) < self.category_max_ratio:
                    break
                x1, y1, x2, y2 = self._crop_window(shape)
        # Copies, so the big scaled image is freed and later cv2 calls get contiguous input.
        data["img"] = np.ascontiguousarray(data["img"][y1:y2, x1:x2])
        for key in _gt_keys(data):
            data[key] = np.ascontiguousarray(data[key][y1:y2, x1:x2])
        return data


@register_transform
class RandomHorizontalFlip:
    """Flip image and labels left-right with probability ``prob`` (Python's ``random``)."""

    def __init__(self, prob=0.5):
        self.prob = prob

    def __call__(self, data: Dict) -> Dict:
        if random.random() < self.prob:
            data["img"] = _hflip(data["img"])
            for key in _gt_keys(data):
                data[key] = _hflip(data[key])
        return data


_CV_DTYPES = {np.dtype(t) for t in (np.uint8, np.int8, np.uint16, np.int16, np.int32)} | {
    np.dtype(np.float32),
    np.dtype(np.float64),
}


def _hflip(a: np.ndarray) -> np.ndarray:
    if a.dtype in _CV_DTYPES and a.ndim in (2, 3):
        return cv2.flip(np.ascontiguousarray(a), 1)
    return np.ascontiguousarray(a[:, ::-1])  # dtypes OpenCV lacks (int64, bool ...)


# --- colour jitter: PIL ImageEnhance's formulas on uint8 arrays -------------------------------

_LEVELS = np.arange(256, dtype=np.float32)


def _blend_lut(base: float, factor: float) -> np.ndarray:
    """PIL ``Image.blend(degenerate, im, factor)`` for a constant degenerate: truncate, clip."""
    out = np.float32(base) + np.float32(factor) * (_LEVELS - np.float32(base))
    return np.clip(out, 0, 255).astype(np.uint8)  # astype truncates like PIL's (UINT8) cast


def _lut(img: np.ndarray, table: np.ndarray) -> np.ndarray:
    return cv2.LUT(img, table)


def _brightness(img: np.ndarray, factor: float) -> np.ndarray:
    return _lut(img, _blend_lut(0.0, factor))


def _gray(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 2 else cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)


def _contrast(img: np.ndarray, factor: float) -> np.ndarray:
    # PIL: the degenerate image is the mean grey level, int(mean + 0.5), of the "L" image.
    if img.ndim == 2:
        mean = float(cv2.mean(img)[0])
    else:
        r, g, b = cv2.mean(img)[:3]
        mean = 0.299 * r + 0.587 * g + 0.114 * b
    return _lut(img, _blend_lut(float(int(mean + 0.5)), factor))


def _saturation(img: np.ndarray, factor: float) -> np.ndarray:
    # PIL ImageEnhance.Color: blend with the image's own grey version; a no-op on grey images.
    if img.ndim == 2:
        return img
    gray = cv2.cvtColor(_gray(img), cv2.COLOR_GRAY2RGB)
    # gray + factor * (img - gray), truncated as PIL does (-0.5 turns OpenCV's rounding into it).
    return cv2.addWeighted(img, factor, gray, 1.0 - factor, -0.5)


def _hue(img: np.ndarray, delta: float) -> np.ndarray:
    # PIL's HSV has hue in [0, 255] for the full circle; PaddleSeg adds delta and wraps mod 256.
    hsv = cv2.cvtColor(img, cv2.COLOR_RGB2HSV_FULL)
    table = (np.trunc(_LEVELS + np.float32(delta)).astype(np.int64) % 256).astype(np.uint8)
    hsv[..., 0] = cv2.LUT(hsv[..., 0], table)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB_FULL)


_SMOOTH = np.array([[1, 1, 1], [1, 5, 1], [1, 1, 1]], dtype=np.float32) / 13.0


def _sharpness(img: np.ndarray, factor: float) -> np.ndarray:
    # PIL ImageEnhance.Sharpness: blend with ImageFilter.SMOOTH, whose border pixels are kept.
    smooth = cv2.filter2D(img, -1, _SMOOTH, borderType=cv2.BORDER_REPLICATE)
    smooth[0], smooth[-1], smooth[:, 0], smooth[:, -1] = img[0], img[-1], img[:, 0], img[:, -1]
    return cv2.addWeighted(img, factor, smooth, 1.0 - factor, -0.5)


@register_transform
class RandomDistort:
    """Random brightness, contrast, saturation, hue and sharpness, in random order.

    PaddleSeg's keys and defaults: ``{brightness,contrast,saturation,sharpness}_range`` (0.5)
    give factors in [1 - range, 1 + range], ``hue_range`` (18) a shift in [-range, range] of
    PIL's 0-255 hue circle, ``*_prob`` the chance of each (0.5; sharpness 0). Grey images skip
    hue, as PaddleSeg does. The image leaves as uint8 (PaddleSeg returns float32 of the same
    integer values); ``Normalize`` converts.
    """

    def __init__(
        self,
        brightness_range=0.5,
        brightness_prob=0.5,
        contrast_range=0.5,
        contrast_prob=0.5,
        saturation_range=0.5,
        saturation_prob=0.5,
        hue_range=18,
        hue_prob=0.5,
        sharpness_range=0.5,
        sharpness_prob=0,
    ):
        self.brightness_range = brightness_range
        self.brightness_prob = brightness_prob
        self.contrast_range = contrast_range
        self.contrast_prob = contrast_prob
        self.saturation_range = saturation_range
        self.saturation_prob = saturation_prob
        self.hue_range = hue_range
        self.hue_prob = hue_prob
        self.sharpness_range = sharpness_range
        self.sharpness_prob = sharpness_prob

    def plan(self, is_color: bool) -> List[tuple]:
        """The (op name, factor) list applied, drawing random numbers exactly as PaddleSeg does.

        PaddleSeg shuffles [brightness, contrast, saturation, sharpness(, hue)] with Python's
        ``random``; then per op draws U(0, 1) < prob, and if taken the factor U(lower, upper).
        """
        ops = ["brightness", "contrast", "saturation", "sharpness"] + (["hue"] if is_color else [])
        random.shuffle(ops)
        bounds = {
            "brightness": (1 - self.brightness_range, 1 + self.brightness_range),
            "contrast": (1 - self.contrast_range, 1 + self.contrast_range),
            "saturation": (1 - self.saturation_range, 1 + self.saturation_range),
            "sharpness": (1 - self.sharpness_range, 1 + self.sharpness_range),
            "hue": (-self.hue_range, self.hue_range),
        }
        probs = {
            "brightness": self.brightness_prob,
            "contrast": self.contrast_prob,
            "saturation": self.saturation_prob,
            "sharpness": self.sharpness_prob,
            "hue": self.hue_prob,
        }
        chosen = []
        for name in ops:
            if np.random.uniform(0, 1) < probs[name]:
                chosen.append((name, float(np.random.uniform(*bounds[name]))))
        return chosen

    _APPLY = {
        "brightness": _brightness,
        "contrast": _contrast,
        "saturation": _saturation,
        "sharpness": _sharpness,
        "hue": _hue,
    }

    def __call__(self, data: Dict) -> Dict:
        img = data["img"]
        if img.dtype != np.uint8:
            # PaddleSeg: astype('uint8') (truncation), whatever the range.
            img = to_uint8(img)
            if img.dtype != np.uint8:
                img = img.astype(np.uint8)
        img = np.ascontiguousarray(img)
        for name, factor in self.plan(img.ndim > 2):
            img = self._APPLY[name](img, factor)
        data["img"] = img
        return data


@register_transform
class Normalize:
    """(img / 255 - mean) / std as float32, in one pass; the pipeline's float conversion."""

    def __init__(self, mean: Sequence[float] = (0.5,), std: Sequence[float] = (0.5,)):
        if not isinstance(mean, (list, tuple)) or not isinstance(std, (list, tuple)):
            raise ValueError(f"{self}: mean and std must be lists or tuples")
        if len(mean) not in (1, 3) or len(std) not in (1, 3):
            raise ValueError(f"{self}: mean and std must have 1 or 3 values")
        if np.prod(std) == 0:
            raise ValueError(f"{self}: std is invalid!")
        self.mean = np.array(mean)
        self.std = np.array(std)
        self._scale = (1.0 / (255.0 * self.std)).astype(np.float32)
        self._shift = (-self.mean / self.std).astype(np.float32)

    def __call__(self, data: Dict) -> Dict:
        img = data["img"]
        channels = 1 if img.ndim == 2 else img.shape[2]
        if channels in (1, 3) and img.dtype in (np.uint8, np.float32):
            scale = np.resize(self._scale, channels)
            shift = np.resize(self._shift, channels)
            out = cv2.multiply(img, tuple(scale.tolist()) + (0,) * (4 - channels), dtype=cv2.CV_32F)
            out = cv2.add(out, tuple(shift.tolist()) + (0,) * (4 - channels))
            data["img"] = out.reshape(img.shape)
        else:
            out = img.astype(np.float32) / 255.0
            out -= self.mean
            out /= self.std
            data["img"] = out.astype(np.float32, copy=False)
        return data


def _uint8_safe_types() -> tuple:
    import paddleseg.transforms.transforms as stock

    own = (ResizeStepScaling, RandomPaddingCrop, RandomHorizontalFlip, RandomDistort, Normalize)
    # PaddleSeg's OpenCV-only geometric transforms take uint8 images as they are.
    names = ("Resize", "ResizeByLong", "ResizeByShort", "Padding", "RandomVerticalFlip")
    return own + tuple(getattr(stock, n) for n in names)


def takes_uint8(compose: Any) -> bool:
    """Whether every transform of a PaddleSeg ``Compose`` accepts uint8 images."""
    return isinstance(compose, Compose) and all(
        isinstance(t, _uint8_safe_types()) for t in compose.transforms
    )
