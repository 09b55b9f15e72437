"""Colour palettes and mask rendering for predictions and VisualDL images."""

from __future__ import annotations

from typing import Optional

import numpy as np

#: Official Cityscapes colours of the 19 train ids (cityscapesscripts' labels table).
CITYSCAPES_PALETTE = np.array(
    [
        (128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
        (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
        (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70),
        (0, 60, 100), (0, 80, 100), (0, 0, 230), (119, 11, 32),
    ],
    dtype=np.uint8,
)  # fmt: skip

CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip


def voc_palette(num_classes: int = 256) -> np.ndarray:
    """The Pascal VOC bit-interleaved palette, (num_classes, 3) uint8; also the generic one."""
    palette = np.zeros((num_classes, 3), dtype=np.uint8)
    for idx in range(num_classes):
        label, r, g, b = idx, 0, 0, 0
        for shift in range(7, -1, -1):
            r |= ((label >> 0) & 1) << shift
            g |= ((label >> 1) & 1) << shift
            b |= ((label >> 2) & 1) << shift
            label >>= 3
        palette[idx] = (r, g, b)
    return palette


def palette_for(num_classes: int, dataset: Optional[str] = None) -> np.ndarray:
    """Palette of at least ``num_classes`` colours: Cityscapes colours for 19-class Cityscapes."""
    if num_classes == 19 and (dataset is None or "cityscapes" in dataset.lower()):
        return CITYSCAPES_PALETTE
    return voc_palette(max(num_classes, 256))


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
