"""Small, deterministic datasets in the Cityscapes layout (quick start, tests) and in a
CamVid-like pre-split layout with void = 11 (the "Your own data" walk-through in docs/data.md).

Each image is a street-like scene: sky above, road below, buildings and vegetation in
between, and random objects (cars, people, poles, signs ...) drawn as filled shapes. Every
class has its own colour (the Cityscapes palette) plus per-image lighting, per-pixel noise
and a class-specific texture, so a network must use local context, not one pixel, to be
right. Some border pixels are marked 255 (ignore), as in real Cityscapes labels.

Layout (what ``paddleseg.datasets.Cityscapes`` reads)::

    root/leftImg8bit/{train,val}/synth/synth_000000_000012_leftImg8bit.png
    root/gtFine/{train,val}/synth/synth_000000_000012_gtFine_labelTrainIds.png
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import cv2
import numpy as np

from paddle_stdc.utils.visualize import CITYSCAPES_PALETTE

NUM_CLASSES = 19
IGNORE_INDEX = 255
# Object classes drawn on top of the background bands: (train id, shape kind).
_OBJECTS = ((13, "rect"), (11, "ellipse"), (5, "pole"), (7, "rect"), (6, "rect"), (1, "band"),
            (3, "rect"), (4, "band"), (9, "band"), (12, "ellipse"), (14, "rect"), (15, "rect"),
            (16, "rect"), (17, "ellipse"), (18, "ellipse"))  # fmt: skip


def _scene_label(rng: np.random.RandomState, h: int, w: int) -> np.ndarray:
    label = np.full((h, w), 2, dtype=np.uint8)  # building
    horizon = int(h * rng.uniform(0.35, 0.5))
    label[: int(horizon * rng.uniform(0.4, 0.8))] = 10  # sky
    label[horizon:] = 0  # road
    veg_x = rng.randint(0, w // 2)
    label[int(horizon * 0.5) : horizon, veg_x : veg_x + rng.randint(w // 8, w // 3)] = 8
    for _ in range(rng.randint(6, 12)):
        cls, kind = _OBJECTS[rng.randint(len(_OBJECTS))]
        cx, cy = rng.randint(0, w), rng.randint(horizon // 2, h)
        sw, sh = rng.randint(w // 20, w // 6), rng.randint(h // 20, h // 5)
        if kind == "rect":
            cv2.rectangle(label, (cx - sw, cy - sh), (cx + sw, cy + sh), int(cls), -1)
        elif kind == "ellipse":
            cv2.ellipse(label, (cx, cy), (sw // 2 + 1, sh), 0, 0, 360, int(cls), -1)
        elif kind == "pole":
            cv2.rectangle(label, (cx, cy - 2 * sh), (cx + max(2, w // 100), cy + sh), int(cls), -1)
        else:  # a horizontal band along the road edge
            y0 = rng.randint(horizon, h - 4)
            label[y0 : y0 + rng.randint(3, max(4, h // 12)), cx : cx + 2 * sw] = cls
    border = max(1, h // 64)
    label[-border:] = IGNORE_INDEX  # the ego-vehicle hood is unlabelled in Cityscapes
    return label


def _render(rng: np.random.RandomState, label: np.ndarray) -> np.ndarray:
    h, w = label.shape
    colors = CITYSCAPES_PALETTE.astype(np.float32)
    img = np.zeros((h, w, 3), np.float32)
    valid = label != IGNORE_INDEX
    img[valid] = colors[label[valid]]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    # Class-specific stripes: frequency and direction depend on the class id.
    phase = (xx * np.cos(label * 0.7) + yy * np.sin(label * 0.7)) * (0.2 + 0.05 * (label % 5))
    img += 18.0 * np.sin(phase)[..., None]
    img *= rng.uniform(0.75, 1.25)  # lighting
    img += rng.normal(0, 12.0, size=img.shape)
    img[~valid] = 20.0
    return np.clip(img, 0, 255).astype(np.uint8)


def make_synthetic_cityscapes(
    root: str | Path,
    num_train: int = 32,
    num_val: int = 8,
    size: Tuple[int, int] = (512, 256),
    seed: int = 0,
) -> Path:
    """Write the dataset under ``root`` (idempotent: existing files are kept) and return it.

    Args:
        root: dataset root (what a config's ``dataset_root`` points at).
        num_train / num_val: number of images per split.
        size: (width, height) of every image.
        seed: the dataset is a pure function of the seed and the sizes.
    """
    root = Path(root)
    w, h = size
    for split, count, offset in (("train", num_train, 0), ("val", num_val, 100_000)):
        img_dir = root / "leftImg8bit" / split / "synth"
        lbl_dir = root / "gtFine" / split / "synth"
        img_dir.mkdir(parents=True, exist_ok=True)
        lbl_dir.mkdir(parents=True, exist_ok=True)
        for idx in range(count):
            stem = f"synth_{seed:06d}_{idx:06d}"
            img_path = img_dir / f"{stem}_leftImg8bit.png"
            lbl_path = lbl_dir / f"{stem}_gtFine_labelTrainIds.png"
            if img_path.exists() and lbl_path.exists():
                continue
            rng = np.random.RandomState(seed * 1_000_003 + offset + idx)
            label = _scene_label(rng, h, w)
            image = _render(rng, label)
            cv2.imwrite(str(lbl_path), label)
            cv2.imwrite(str(img_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return root


# --- a CamVid-like dataset: pre-split folders, 11 classes, void = 11 --------------------------

#: CamVid's 11 classes (SegNet's split), in their label order; 11 is void.
CAMVID_CLASSES = ("sky", "building", "pole", "road", "sidewalk", "tree", "sign", "fence", "car",
                  "pedestrian", "bicyclist")  # fmt: skip
CAMVID_VOID = 11
#: Cityscapes train id -> CamVid class (255 -> void).
_CITYSCAPES_TO_CAMVID = np.full(256, CAMVID_VOID, np.uint8)
_CITYSCAPES_TO_CAMVID[:19] = [3, 4, 1, 1, 7, 2, 6, 6, 5, 5, 0, 9, 10, 8, 8, 8, 8, 10, 10]


def make_synthetic_camvid(
    root: str | Path,
    counts: Dict[str, int] | None = None,
    size: Tuple[int, int] = (480, 360),
    seed: int = 0,
    shipped_lists: bool = True,
) -> Path:
    """Write a CamVid-like dataset under ``root`` (idempotent) and return it.

    Layout, as CamVid's SegNet release: ``train/ trainannot/ val/ valannot/ test/ testannot/``
    with ``<name>.png`` images and grey label PNGs of the same name, classes 0..10 and void 11
    (the Cityscapes-like scenes of :func:`make_synthetic_cityscapes`, relabelled).
    ``shipped_lists`` also writes ``train.txt``/``val.txt``/``test.txt`` with another
    machine's absolute paths, as CamVid ships them (they are useless here, and must not be
    overwritten by a preparation tool).

    Args:
        counts: images per split; default ``{"train": 8, "val": 4, "test": 4}``.
        size: (width, height) of every image.
    """
    root = Path(root)
    w, h = size
    counts = counts or {"train": 8, "val": 4, "test": 4}
    for s_idx, (split, count) in enumerate(counts.items()):
        (root / split).mkdir(parents=True, exist_ok=True)
        (root / f"{split}annot").mkdir(parents=True, exist_ok=True)
        lines = []
        for idx in range(count):
            name = f"synth_{split}_{idx:04d}.png"
            img_path, lbl_path = root / split / name, root / f"{split}annot" / name
            lines.append(f"/SegNet/CamVid/{split}/{name} /SegNet/CamVid/{split}annot/{name}\n")
            if img_path.exists() and lbl_path.exists():
                continue
            rng = np.random.RandomState(seed * 1_000_003 + 200_000 * (s_idx + 1) + idx)
            label = _scene_label(rng, h, w)
            image = _render(rng, label)
            cv2.imwrite(str(lbl_path), _CITYSCAPES_TO_CAMVID[label])
            cv2.imwrite(str(img_path), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
        if shipped_lists and not (root / f"{split}.txt").exists():
            (root / f"{split}.txt").write_text("".join(lines))
    return root
