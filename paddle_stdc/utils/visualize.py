"""Colour palettes and mask rendering for predictions and VisualDL images."""

from __future__ import annotations

import numpy as np

# Palettes live in paddle_stdc.data.palettes; re-exported here for existing imports.
from paddle_stdc.data.palettes import (  # noqa: F401
    CITYSCAPES_CLASSES,
    CITYSCAPES_PALETTE,
    VOC_CLASSES,
    load_palette,
    palette_for,
    voc_palette,
)


def colorize(mask: np.ndarray, palette: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """Class-id mask (H, W) -> RGB image (H, W, 3) uint8; ignored/unknown pixels are black."""
    mask = np.asarray(mask)
    lut = np.zeros((256, 3), dtype=np.uint8)
    lut[: min(len(palette), 256)] = palette[:256]
    if ignore_index is not None and 0 <= ignore_index < 256 and ignore_index >= len(palette):
        lut[ignore_index] = 0
    return lut[np.clip(mask, 0, 255).astype(np.uint8)]


def overlay(image_rgb: np.ndarray, color_mask: np.ndarray, weight: float = 0.6) -> np.ndarray:
    """Blend an RGB image (H, W, 3) uint8 with a colour mask of the same size."""
    blended = image_rgb.astype(np.float32) * (1 - weight) + color_mask.astype(np.float32) * weight
    return np.clip(blended, 0, 255).astype(np.uint8)
