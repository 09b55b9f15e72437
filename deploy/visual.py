"""Class-id masks as pictures: the palette PNG and the colour overlay, for infer.py, video and
serving alike.

``colours`` are RGB triples per class id (deploy.yaml's ``palette``); ids past the list are
black. Images are OpenCV's BGR uint8 (H, W, 3); masks uint8 class ids (H, W).
"""

from __future__ import annotations

import io
from typing import Sequence

import numpy as np


def full_palette(colours: Sequence[Sequence[int]]) -> np.ndarray:
    """(256, 3) uint8 RGB: ``colours`` first, black after."""
    palette = np.zeros((256, 3), np.uint8)
    given = np.asarray(colours, np.uint8).reshape(-1, 3)[:256]
    palette[: len(given)] = given
    return palette


def palette_png(mask: np.ndarray, colours: Sequence[Sequence[int]]) -> bytes:
    """A palette ('P' mode) PNG whose pixel values are the class ids."""
    from PIL import Image

    pil = Image.fromarray(mask.astype(np.uint8), mode="P")
    pil.putpalette(full_palette(colours).reshape(-1).tolist())
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def overlay(
    image_bgr: np.ndarray, mask: np.ndarray, colours: Sequence[Sequence[int]], weight: float
) -> np.ndarray:
    """The image blended with the mask's colours: ``(1 - weight) * image + weight * colour``,
    BGR uint8 (rounded to nearest). OpenCV's LUT and addWeighted: ~1 ms at 1024x512, where
    NumPy's float blend took tens of ms on the video's inference thread."""
    import cv2

    lut = np.ascontiguousarray(full_palette(colours)[:, ::-1]).reshape(256, 1, 3)  # BGR
    ids = mask.astype(np.uint8, copy=False)
    colour = cv2.LUT(cv2.merge([ids, ids, ids]), lut)
    return cv2.addWeighted(image_bgr, 1.0 - weight, colour, weight, 0.0)
