"""Per-dataset colour palettes for predictions and VisualDL images (no extra dependencies).

- Cityscapes: the official colours of the 19 train ids (cityscapesscripts' label table; a
  test checks this copy against the package, which prediction does not need).
- Pascal VOC and any other dataset: VOC's bit-interleaved palette, deterministic and distinct
  for up to 256 classes (class 0 black).
- A custom dataset can name its own: ``palette:`` at the top level of a config, or
  ``tools/predict.py --palette``, takes ``cityscapes``, ``voc``, a list of ``[R, G, B]`` or a
  file (``.json`` list of triples, or text with one ``R G B`` line per class).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

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

VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
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


#: Named palettes, by lower-cased dataset type or short name.
NAMED_PALETTES = {
    "cityscapes": CITYSCAPES_PALETTE,
    "voc": voc_palette(256),
    "pascalvoc": voc_palette(256),
}


def _as_palette(colors: Any, origin: str) -> np.ndarray:
    arr = np.asarray(colors)
    if arr.ndim != 2 or arr.shape[1] != 3 or len(arr) == 0:
        raise ValueError(f"palette {origin}: expected a list of [R, G, B] triples, got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.integer) or arr.min() < 0 or arr.max() > 255:
        raise ValueError(f"palette {origin}: colours must be integers in 0..255")
    if len(arr) > 256:
        raise ValueError(f"palette {origin}: at most 256 colours, got {len(arr)}")
    return arr.astype(np.uint8)


def load_palette(spec: Any) -> np.ndarray:
    """A palette from a name (``cityscapes``, ``voc``), a list of triples or a .json/.txt file."""
    if isinstance(spec, np.ndarray) or isinstance(spec, (list, tuple)):
        return _as_palette(spec, "list")
    if not isinstance(spec, (str, Path)):
        raise TypeError(f"palette must be a name, a file or a list of [R, G, B], got {spec!r}")
    key = str(spec).lower()
    if key in NAMED_PALETTES:
        return NAMED_PALETTES[key]
    path = Path(spec)
    if not path.is_file():
        raise ValueError(
            f"palette {spec!r} is neither a known name ({', '.join(sorted(NAMED_PALETTES))}) "
            "nor a file"
        )
    if path.suffix.lower() == ".json":
        return _as_palette(json.loads(path.read_text()), str(path))
    rows = [line.split() for line in path.read_text().splitlines() if line.strip()]
    if any(len(r) != 3 for r in rows):
        raise ValueError(f"palette {path}: every line must be 'R G B'")
    return _as_palette([[int(v) for v in r] for r in rows], str(path))


def palette_for(
    num_classes: int, dataset: Optional[str] = None, palette: Optional[Any] = None
) -> np.ndarray:
    """Palette of at least ``num_classes`` colours.

    ``palette`` (name, list or file, see :func:`load_palette`) wins; else the dataset type
    decides: Cityscapes colours for a 19-class Cityscapes (or unnamed) dataset, VOC's palette
    for PascalVOC and anything else.
    """
    if palette is not None:
        chosen = load_palette(palette)
        if len(chosen) < num_classes:
            raise ValueError(f"palette has {len(chosen)} colours for {num_classes} classes")
        return chosen
    if num_classes == 19 and (dataset is None or "cityscapes" in dataset.lower()):
        return CITYSCAPES_PALETTE
    return voc_palette(max(num_classes, 256))


def class_names_for(num_classes: int, dataset: Optional[str] = None) -> Optional[Sequence[str]]:
    """Class names of the known datasets (Cityscapes, VOC), else None."""
    name = (dataset or "").lower()
    if num_classes == 19 and (not name or "cityscapes" in name):
        return CITYSCAPES_CLASSES
    if num_classes == 21 and "voc" in name:
        return VOC_CLASSES
    return None
