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


def palette_png(
    mask: np.ndarray, colours: Sequence[Sequence[int]], compress_level: int = 6
) -> bytes:
    """A palette ('P' mode) PNG whose pixel values are the class ids.

    ``compress_level`` is zlib's 0-9 (PIL's default 6); serving uses 1, about 3x faster
    for a ~40% larger file (a 512x256 mask: ~0.5 ms vs ~1.5 ms)."""
    from PIL import Image

    pil = Image.fromarray(mask.astype(np.uint8), mode="P")
    pil.putpalette(full_palette(colours).reshape(-1).tolist())
    buf = io.BytesIO()
    pil.save(buf, format="PNG", compress_level=compress_level)
    return buf.getvalue()


def overlay(
    image_bgr: np.ndarray, mask: np.ndarray, colours: Sequence[Sequence[int]], weight: float
) -> np.ndarray:
    """The image blended with the mask's colours: ``(1 - weight) * image + weight * colour``,
    BGR uint8 (rounded down)."""
    colour = full_palette(colours)[mask][..., ::-1].astype(np.float32)  # RGB -> BGR
    blend = image_bgr.astype(np.float32) * (1.0 - weight) + colour * weight
    return blend.astype(np.uint8)
