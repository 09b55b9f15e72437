"""Progress lines (PaddleSeg's ``[TRAIN]`` format), the per-class table, and VisualDL
scalars/images (``Evaluate/IoU/<class>`` per class, named by the dataset's class names)."""

from __future__ import annotations

import datetime
import logging
import re
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

from paddle_stdc.utils.visualize import colorize, palette_for

logger = logging.getLogger("paddle_stdc")


def format_eta(seconds: float) -> str:
    return str(datetime.timedelta(seconds=int(max(0, seconds))))


def log_class_table(metrics: Any, class_names: Optional[Sequence[str]] = None) -> None:
    """``[EVAL] Class IoU:`` and the per-class table (PaddleSeg prints it at each evaluation)."""
    logger.info("[EVAL] Class IoU:\n%s", metrics.format_table(class_names))


def class_tags(num_classes: int, class_names: Optional[Sequence[str]] = None) -> List[str]:
    """One VisualDL tag part per class: its name with every run of characters other than
    letters, digits, ``_ . -`` made ``_`` ("traffic light" -> "traffic_light"), else
    ``class_<id>``; a name that would repeat another's gets ``_<id>``."""
    tags: List[str] = []
    for k in range(num_classes):
        name = str(class_names[k]) if class_names is not None and k < len(class_names) else ""
        tag = re.sub(r"[^0-9A-Za-z_.-]+", "_", name).strip("_") or f"class_{k}"
        tags.append(f"{tag}_{k}" if tag in tags else tag)
    return tags


class ProgressMeter:
    """Averages loss, lr and timings over a logging window and prints the ``[TRAIN]`` line."""

    def __init__(self, iters: int, batch_size: int, steps_per_epoch: int) -> None:
        self.iters, self.batch_size, self.steps_per_epoch = iters, batch_size, steps_per_epoch
        self._reset()

    def _reset(self) -> None:
        self.count, self.reader_cost, self.batch_cost = 0, 0.0, 0.0
        self.losses: List[float] = []
        self.lr = 0.0

    def reader_done(self, seconds: float) -> None:
        self.reader_cost += seconds

    def step_done(self, seconds: float, losses: List[float], lr: float) -> None:
        self.count += 1
        self.batch_cost += seconds
        self.losses = losses if not self.losses else [a + b for a, b in zip(self.losses, losses)]
        self.lr = lr

    def flush(self, it: int) -> Dict[str, float]:
        """Log the window ending at iteration ``it`` and return its averages (VisualDL tags)."""
        n = max(self.count, 1)
        per_loss = [v / n for v in self.losses]
        batch_cost, reader_cost = self.batch_cost / n, self.reader_cost / n
        epoch = (it - 1) // max(self.steps_per_epoch, 1) + 1
        logger.info(
            "[TRAIN] epoch: %d, iter: %d/%d, loss: %.4f, lr: %.6f, batch_cost: %.4f, "
            "reader_cost: %.5f, ips: %.4f samples/sec | ETA %s",
            epoch, it, self.iters, sum(per_loss), self.lr, batch_cost, reader_cost,
            self.batch_size / max(batch_cost, 1e-9), format_eta((self.iters - it) * batch_cost),
        )  # fmt: skip
        scalars = {"Train/loss": sum(per_loss), "Train/lr": self.lr}
        if len(per_loss) > 1:
            scalars.update({f"Train/loss_{i}": v for i, v in enumerate(per_loss)})
        scalars.update({"Train/batch_cost": batch_cost, "Train/reader_cost": reader_cost})
        self._reset()
        return scalars


class VisualDLWriter:
    """A thin VisualDL ``LogWriter``; does nothing when disabled (or on non-main ranks)."""

    def __init__(self, log_dir: str | Path, enabled: bool, palette: Optional[Any] = None) -> None:
        """``palette``: the config's top-level ``palette`` (name, list or file), if any."""
        self._writer = None
        self._palette = palette
        if enabled:
            from visualdl import LogWriter

            self._writer = LogWriter(str(log_dir))

    def scalar(self, tag: str, value: float, step: int) -> None:
        if self._writer is not None:
            self._writer.add_scalar(tag, float(value), step)

    def train_scalars(self, scalars: Dict[str, float], step: int) -> None:
        for tag, value in scalars.items():
            self.scalar(tag, value, step)

    def class_scalars(
        self, class_iou: Sequence[float], step: int, class_names: Optional[Sequence[str]] = None
    ) -> None:
        """``Evaluate/IoU/<class>`` per class; an undefined IoU (class absent from labels and
        predictions) is not written rather than written as 0."""
        for tag, value in zip(class_tags(len(class_iou), class_names), class_iou):
            if not np.isnan(value):
                self.scalar(f"Evaluate/IoU/{tag}", value, step)

    def eval_images(self, result, dataset, step: int) -> None:
        """Prediction | ground truth, side by side, for the samples the evaluator kept."""
        if self._writer is None:
            return
        palette = palette_for(result.confusion.shape[0], type(dataset).__name__, self._palette)
        ignore = getattr(dataset, "ignore_index", 255)
        for k, (_, pred, label) in enumerate(result.samples):
            pair = np.concatenate(
                [colorize(pred, palette, ignore), colorize(label, palette, ignore)], axis=1
            )
            self._writer.add_image(f"Evaluate/prediction_{k}", pair, step)

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
