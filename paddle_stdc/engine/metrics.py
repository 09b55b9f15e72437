"""Segmentation metrics from a confusion matrix (numpy; fast on 2048x1024 maps).

mIoU is the mean over classes that occur in the prediction or the label (nan-mean, as
mmsegmentation and cityscapesscripts); PaddleSeg 2.8 averages absent classes as IoU 0.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Sequence

import numpy as np


def _to_numpy(x) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def confusion_matrix(pred, label, num_classes: int, ignore_index: int = 255) -> np.ndarray:
    """(K, K) int64 counts, rows = label, columns = prediction; ignored pixels are skipped."""
    pred, label = _to_numpy(pred), _to_numpy(label)
    if pred.size != label.size:
        raise ValueError(f"prediction {pred.shape} and label {label.shape} differ in size")
    pred = pred.reshape(-1).astype(np.int64)
    label = label.reshape(-1).astype(np.int64)
    keep = label != ignore_index
    pred, label = pred[keep], label[keep]
    bad = (label < 0) | (label >= num_classes)
    if bad.any():
        values = np.unique(label[bad])[:10].tolist()
        raise ValueError(
            f"label values {values} are outside [0, {num_classes}) and are not ignore_index "
            f"({ignore_index})"
        )
    if pred.size and (pred.min() < 0 or pred.max() >= num_classes):
        raise ValueError(f"prediction values outside [0, {num_classes})")
    counts = np.bincount(label * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


@dataclass
class SegMetrics:
    """mIoU, per-class IoU/precision/recall, pixel accuracy and Cohen's kappa."""

    miou: float
    acc: float
    kappa: float
    class_iou: np.ndarray
    class_precision: np.ndarray
    class_recall: np.ndarray

    @classmethod
    def from_confusion(cls, cm: np.ndarray) -> SegMetrics:
        cm = cm.astype(np.float64)
        tp = np.diag(cm)
        gt, pred = cm.sum(1), cm.sum(0)
        total = cm.sum()
        union = gt + pred - tp
        with np.errstate(divide="ignore", invalid="ignore"):
            iou = np.where(union > 0, tp / union, np.nan)
            precision = np.where(pred > 0, tp / pred, np.nan)
            recall = np.where(gt > 0, tp / gt, np.nan)
        if total == 0:
            return cls(0.0, 0.0, 0.0, iou, precision, recall)
        acc = tp.sum() / total
        expected = (gt * pred).sum() / total**2
        kappa = (acc - expected) / (1 - expected) if expected < 1 else 1.0
        miou = float(np.nanmean(iou)) if np.isfinite(iou).any() else 0.0
        return cls(miou, float(acc), float(kappa), iou, precision, recall)

    def format_table(self, class_names: Optional[Sequence[str]] = None) -> str:
        """Per-class IoU / precision / recall, one line per class."""
        lines = [f"{'class':>16} {'IoU':>7} {'prec':>7} {'recall':>7}"]
        for k, (iou, p, r) in enumerate(
            zip(self.class_iou, self.class_precision, self.class_recall)
        ):
            name = class_names[k] if class_names and k < len(class_names) else str(k)
            lines.append(f"{name:>16} {iou:7.4f} {p:7.4f} {r:7.4f}")
        return "\n".join(lines)
