"""Predict images with a trained model: class-id masks, colour masks and overlays.

Writes, like PaddleSeg's ``tools/predict.py``::

    save_dir/pseudo_color_prediction/<name>.png   palette PNG of class ids
    save_dir/added_prediction/<name>.jpg          colour mask blended over the image
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Iterable, List, Optional, Sequence

import cv2
import numpy as np
import paddle
import paddle.nn as nn
from paddleseg.transforms import Compose
from PIL import Image

from paddle_stdc.engine.inference import EvalProtocol, infer_logits
from paddle_stdc.utils.visualize import colorize, overlay

logger = logging.getLogger("paddle_stdc")

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(path: str | Path) -> List[Path]:
    """An image file, or every image under a folder (recursively), sorted."""
    path = Path(path)
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise FileNotFoundError(f"--image_path {path} is neither an image file nor a folder")
    images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise FileNotFoundError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {path}")
    return images


def predict_mask(
    model: nn.Layer, transforms: Compose, image_path: Path, protocol: Optional[EvalProtocol] = None
) -> np.ndarray:
    """Class-id mask (H, W) uint8 of one image at its original resolution."""
    image = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    if image is None:
        raise ValueError(f"cannot read image {image_path} (missing, empty or not an image)")
    data = transforms({"img": image.astype(np.float32), "trans_info": []})
    x = paddle.to_tensor(data["img"][np.newaxis])
    with paddle.no_grad():
        logits = infer_logits(model, x, data.get("trans_info"), protocol)
    return paddle.argmax(logits, axis=1)[0].numpy().astype(np.uint8)


def save_prediction(
    mask: np.ndarray, image_path: Path, save_dir: Path, palette: np.ndarray, rel_name: str
) -> None:
    """Write the palette PNG and the overlay for one image."""
    color_dir, added_dir = save_dir / "pseudo_color_prediction", save_dir / "added_prediction"
    stem = Path(rel_name).with_suffix("")
    (color_dir / stem).parent.mkdir(parents=True, exist_ok=True)
    (added_dir / stem).parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(mask, mode="P")
    pil.putpalette(palette[:256].reshape(-1).tolist())
    pil.save(color_dir / f"{stem}.png")
    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    blend = overlay(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), colorize(mask, palette))
    cv2.imwrite(str(added_dir / f"{stem}.jpg"), cv2.cvtColor(blend, cv2.COLOR_RGB2BGR))


def predict(
    model: nn.Layer,
    transforms: Sequence,
    image_paths: Iterable[Path],
    save_dir: str | Path,
    palette: np.ndarray,
    image_root: Optional[Path] = None,
    protocol: Optional[EvalProtocol] = None,
) -> List[Path]:
    """Predict every image and write its masks under ``save_dir``; returns the PNG paths."""
    model.eval()
    compose = Compose(list(transforms))
    save_dir = Path(save_dir)
    written = []
    for path in image_paths:
        rel = str(path.relative_to(image_root)) if image_root else path.name
        mask = predict_mask(model, compose, path, protocol)
        save_prediction(mask, path, save_dir, palette, rel)
        written.append(save_dir / "pseudo_color_prediction" / Path(rel).with_suffix(".png"))
    logger.info("Predicted %d images; results in %s", len(written), save_dir)
    return written
