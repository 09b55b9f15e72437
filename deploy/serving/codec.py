"""Request bodies to images and masks to responses: no Ray, no FastAPI (tested on their own).

:func:`decode_image` checks the header's pixel count (:mod:`deploy.serving.imageinfo`) before
OpenCV decodes anything; the encoders turn a class-id mask into a palette PNG, a JPEG overlay
or a per-class pixel summary.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Optional, Sequence

import cv2
import numpy as np

from deploy.serving.imageinfo import ImageHeaderError, image_size
from deploy.visual import overlay


class RequestError(Exception):
    """An HTTP error answer: status, message and extra headers."""

    def __init__(self, status: int, message: str, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.headers = headers or {}


def header_pixels(data: bytes) -> int:
    """Pixel count the image header claims; 0 if there is no readable header (then
    :func:`decode_image` refuses the body at once)."""
    try:
        width, height = image_size(data)
    except ImageHeaderError:
        return 0
    return width * height


def decode_image(data: bytes, max_pixels: int) -> np.ndarray:
    """BGR uint8 image; 413 if the header claims more than ``max_pixels``, 400 if unreadable."""
    if not data:
        raise RequestError(400, "empty body: send the image file as the request body")
    try:
        width, height = image_size(data)
    except ImageHeaderError as err:
        raise RequestError(400, f"not a decodable image: {err}") from None
    if width * height > max_pixels:
        raise RequestError(413, f"image of {width}x{height} pixels is over the limit of "
                                f"{max_pixels} pixels (--max_pixels)")  # fmt: skip
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        raise RequestError(400, "not a decodable image: the decoder rejected the data")
    return image


def default_palette(num_classes: int) -> List[List[int]]:
    """PASCAL VOC's bit-interleaved colour map (PaddleSeg's default visualisation colours)."""
    palette = []
    for label in range(num_classes):
        rgb, lab = [0, 0, 0], label
        for shift in range(7, -1, -1):
            for c in range(3):
                rgb[c] |= ((lab >> c) & 1) << shift
            lab >>= 3
        palette.append(rgb)
    return palette


def read_class_names(value: Optional[str]) -> Optional[List[str]]:
    """``--class_names``: a text file (one name a line) or a comma-separated list."""
    if not value:
        return None
    path = Path(value)
    if path.is_file():
        return [line.strip() for line in path.read_text().splitlines() if line.strip()]
    return [name.strip() for name in value.split(",")]


def encode_overlay(image: np.ndarray, mask: np.ndarray, palette: Sequence[Sequence[int]]) -> bytes:
    """JPEG of the image blended half-and-half with the mask's colours."""
    blend = overlay(image, mask, palette, weight=0.5)
    return cv2.imencode(".jpg", blend, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes()


def server_timing(stages: Dict[str, float]) -> str:
    """A ``Server-Timing`` header value (W3C) for stage durations in ms, in the given order:
    where a request's time went inside the server (``tools/benchmark_serving.py --profile``)."""
    return ", ".join(f"{name};dur={ms:.2f}" for name, ms in stages.items())


def parse_server_timing(value: str) -> Dict[str, float]:
    """``server_timing``'s inverse: {stage: ms} (entries without ``dur`` are skipped)."""
    stages: Dict[str, float] = {}
    for entry in value.split(","):
        name, _, params = entry.strip().partition(";")
        for param in params.split(";"):
            key, _, val = param.strip().partition("=")
            if key == "dur" and name:
                stages[name] = float(val)
    return stages


def summary(mask: np.ndarray, names: Optional[Sequence[str]], latency_ms: float) -> Dict:
    """{"height", "width", "classes": [{"id", "pixels", "share"[, "name"]}], "latency_ms"}."""
    counts = np.bincount(mask.reshape(-1), minlength=1)
    total = max(int(mask.size), 1)
    classes = []
    for cid in np.flatnonzero(counts):
        entry = {"id": int(cid), "pixels": int(counts[cid]),
                 "share": round(int(counts[cid]) / total, 6)}  # fmt: skip
        if names and cid < len(names):
            entry["name"] = names[cid]
        classes.append(entry)
    return {"height": int(mask.shape[0]), "width": int(mask.shape[1]), "classes": classes,
            "latency_ms": round(latency_ms, 2)}  # fmt: skip
