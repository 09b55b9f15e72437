"""Predict images with a trained model: class-id masks, colour masks and overlays.

Writes, like PaddleSeg's ``tools/predict.py``::

    save_dir/pseudo_color_prediction/<name>.png   palette PNG of class ids
    save_dir/added_prediction/<name>.jpg          colour mask blended over the image

With ``legend``, the overlay gets a panel naming the classes present (the one infer.py draws,
:func:`deploy.visual.with_legend`). ``<name>`` is :func:`deploy.images.output_names`'s: the
image's path relative to the images' common folder, so subfolders are kept and two images
never share an output.
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

from deploy.images import list_images, output_names  # noqa: F401  (list_images: re-export)
from deploy.visual import with_legend
from paddle_stdc.data.datasets import load_model_input
from paddle_stdc.engine.inference import EvalProtocol, infer_logits
from paddle_stdc.engine.runtime import configure_cpu_threads
from paddle_stdc.utils.visualize import colorize, overlay

logger = logging.getLogger("paddle_stdc")


def predict_mask(
    model: nn.Layer, transforms: Compose, image_path: Path, protocol: Optional[EvalProtocol] = None
) -> np.ndarray:
    """Class-id mask (H, W) uint8 of one image at its original resolution.

    The image becomes the tensor ``tools/val.py`` evaluates and the export's predictor runs
    (:func:`~paddle_stdc.data.datasets.load_model_input`: resized as uint8, then normalized).
    """
    data = load_model_input(image_path, transforms)
    x = paddle.to_tensor(data["img"][np.newaxis])
    with paddle.no_grad():
        logits = infer_logits(model, x, data.get("trans_info"), protocol)
    return paddle.argmax(logits, axis=1)[0].numpy().astype(np.uint8)


def save_prediction(
    mask: np.ndarray,
    image_path: Path,
    save_dir: Path,
    palette: np.ndarray,
    stem: str,
    class_names: Optional[Sequence[str]] = None,
    legend: bool = False,
) -> None:
    """Write the palette PNG and the overlay for one image (``stem``: relative, no suffix);
    ``legend`` adds the classes present, named by ``class_names``, beside the overlay."""
    color_dir, added_dir = save_dir / "pseudo_color_prediction", save_dir / "added_prediction"
    (color_dir / stem).parent.mkdir(parents=True, exist_ok=True)
    (added_dir / stem).parent.mkdir(parents=True, exist_ok=True)
    pil = Image.fromarray(mask, mode="P")
    pil.putpalette(palette[:256].reshape(-1).tolist())
    pil.save(color_dir / f"{stem}.png")
    bgr = cv2.imread(str(image_path), cv2.IMREAD_COLOR)
    blend = overlay(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), colorize(mask, palette))
    blend = cv2.cvtColor(blend, cv2.COLOR_RGB2BGR)
    if legend:
        blend = with_legend(blend, mask, palette[:256], class_names)
    cv2.imwrite(str(added_dir / f"{stem}.jpg"), blend)


def predict(
    model: nn.Layer,
    transforms: Sequence,
    image_paths: Iterable[Path],
    save_dir: str | Path,
    palette: np.ndarray,
    protocol: Optional[EvalProtocol] = None,
    class_names: Optional[Sequence[str]] = None,
    legend: bool = False,
    cpu_threads: Optional[int] = None,
) -> List[Path]:
    """Predict every image and write its masks under ``save_dir``; returns the PNG paths.

    Output names come from :func:`deploy.images.output_names` (subfolders kept, distinct).
    On CPU it runs ``cpu_threads`` threads (default: the cores the process may use).
    """
    configure_cpu_threads(cpu_threads)
    model.eval()
    compose = Compose(list(transforms))
    save_dir = Path(save_dir)
    written = []
    for path, name in output_names([Path(p) for p in image_paths]).items():
        mask = predict_mask(model, compose, path, protocol)
        save_prediction(mask, path, save_dir, palette, name, class_names, legend)
        written.append(save_dir / "pseudo_color_prediction" / f"{name}.png")
    how = protocol.describe() if protocol is not None else "full resolution"
    logger.info("Predicted %d images (%s); results in %s", len(written), how, save_dir)
    return written
