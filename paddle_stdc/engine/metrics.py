"""Segmentation metrics from a confusion matrix (numpy; one bincount per 2048x1024 map).

Everything derives from the (K, K) confusion matrix (rows = label, columns = prediction),
which sums exactly across images and processes.

Averaging convention: ``miou`` is the mean over classes whose union (label or prediction
pixels) is non-empty, i.e. a nan-mean as in mmsegmentation and cityscapesscripts. PaddleSeg
2.8 instead counts such absent classes as IoU 0 in the mean (``miou_paddleseg`` gives that
number); the two agree whenever every class occurs, as on the full Cityscapes val set.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np


def _to_numpy(x: Any) -> np.ndarray:
    return x.numpy() if hasattr(x, "numpy") else np.asarray(x)


def _as_int64(a: np.ndarray, name: str) -> np.ndarray:
    if a.dtype == np.int64:
        return a
    if np.issubdtype(a.dtype, np.integer) or a.dtype == np.bool_:
        return a.astype(np.int64)
    rounded = np.rint(a)
    if not np.array_equal(rounded, a):
        raise ValueError(f"{name} must hold integer class ids, got non-integer {a.dtype} values")
    return rounded.astype(np.int64)


def _values(a: np.ndarray, limit: int = 10) -> str:
    values = np.unique(a)
    text = str(values[:limit].tolist())
    return text if len(values) <= limit else f"{text[:-1]}, ...] ({len(values)} distinct)"


def confusion_matrix(
    pred: Any, label: Any, num_classes: int, ignore_index: Optional[int] = 255
) -> np.ndarray:
    """(K, K) int64 pixel counts, rows = label class, columns = predicted class.

    ``pred`` and ``label`` are numpy arrays or paddle tensors of the same shape (shapes that
    differ only by size-1 axes, e.g. (1, 1, H, W) vs (H, W), are accepted). Pixels whose label
    is ``ignore_index`` are skipped; any other label, or a prediction at a counted pixel,
    outside [0, K) is a ValueError naming the values.
    """
    pred, label = _to_numpy(pred), _to_numpy(label)
    if pred.shape != label.shape and np.squeeze(pred).shape != np.squeeze(label).shape:
        raise ValueError(
            f"prediction shape {tuple(pred.shape)} and label shape {tuple(label.shape)} differ"
        )
    k = int(num_classes)
    pred = _as_int64(pred.reshape(-1), "prediction")
    label = _as_int64(label.reshape(-1), "label")
    if ignore_index is not None:
        keep = label != ignore_index
        if not keep.all():
            pred, label = pred[keep], label[keep]
    if label.size:
        bad = (label < 0) | (label >= k)
        if bad.any():
            raise ValueError(
                f"label values {_values(label[bad])} are outside [0, {k}) and are not "
                f"ignore_index ({ignore_index})"
            )
        bad = (pred < 0) | (pred >= k)
        if bad.any():
            raise ValueError(f"prediction values {_values(pred[bad])} are outside [0, {k})")
    counts = np.bincount(label * k + pred, minlength=k * k)
    return counts.reshape(k, k).astype(np.int64, copy=False)


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """num / den per class, nan where den == 0."""
    out = np.full(num.shape, np.nan, dtype=np.float64)
    np.divide(num, den, out=out, where=den > 0)
    return out


def _nanmean(values: np.ndarray) -> float:
    finite = values[~np.isnan(values)]
    return float(finite.mean()) if finite.size else float("nan")


@dataclass
class SegMetrics:
    """mIoU, pixel accuracy, Cohen's kappa, mean Dice and per-class IoU/precision/recall/Dice.

    Per-class arrays hold nan where a class is undefined (e.g. IoU of a class in neither the
    labels nor the predictions, precision of a never-predicted class); PaddleSeg writes 0.
    Scalars are nan when nothing was counted.
    """

    miou: float
    acc: float
    kappa: float
    mdice: float
    class_iou: np.ndarray
    class_precision: np.ndarray
    class_recall: np.ndarray
    class_dice: np.ndarray
    class_pixels: np.ndarray  # label pixels per class

    @classmethod
    def from_confusion(cls, cm: np.ndarray) -> SegMetrics:
        """Metrics of a (K, K) confusion matrix (rows = label, columns = prediction)."""
        cm = np.asarray(cm, dtype=np.float64)
        if cm.ndim != 2 or cm.shape[0] != cm.shape[1]:
            raise ValueError(f"confusion matrix must be square (K, K), got {cm.shape}")
        tp = np.diag(cm)
        gt, pred = cm.sum(axis=1), cm.sum(axis=0)
        total = cm.sum()
        class_iou = _ratio(tp, gt + pred - tp)
        class_dice = _ratio(2 * tp, gt + pred)
        if total > 0:
            acc = float(tp.sum() / total)
            # Cohen's kappa as PaddleSeg's metrics.kappa: (po - pe) / (1 - pe). pe == 1 only
            # when labels and predictions are all one and the same class: perfect agreement.
            expected = float((gt * pred).sum() / total**2)
            kappa = (acc - expected) / (1 - expected) if expected < 1 else 1.0
        else:
            acc = kappa = float("nan")
        return cls(
            miou=_nanmean(class_iou),
            acc=acc,
            kappa=float(kappa),
            mdice=_nanmean(class_dice),
            class_iou=class_iou,
            class_precision=_ratio(tp, pred),
            class_recall=_ratio(tp, gt),
            class_dice=class_dice,
            class_pixels=gt.astype(np.int64),
        )

    @property
    def num_classes(self) -> int:
        return len(self.class_iou)

    @property
    def miou_paddleseg(self) -> float:
        """mIoU as PaddleSeg 2.8 computes it: absent classes count as IoU 0."""
        return float(np.nan_to_num(self.class_iou, nan=0.0).mean())

    def summary(self) -> str:
        """One log line: mIoU, Acc, Kappa, Dice."""
        return (
            f"mIoU: {self.miou:.4f} Acc: {self.acc:.4f} Kappa: {self.kappa:.4f} "
            f"Dice: {self.mdice:.4f}"
        )

    def format_table(self, class_names: Optional[Sequence[str]] = None) -> str:
        """Per-class IoU / precision / recall / Dice and label pixels; '-' marks undefined."""

        def cell(v: float) -> str:
            return f"{'-':>9}" if np.isnan(v) else f"{v:9.4f}"

        names = [
            str(class_names[k]) if class_names is not None and k < len(class_names) else str(k)
            for k in range(self.num_classes)
        ]
        width = max([5] + [len(n) for n in names])
        header = f"{'class':<{width}} {'IoU':>9}{'Precision':>10}{'Recall':>9}{'Dice':>9}"
        lines = [header + f"{'Pixels':>12}"]
        for k, name in enumerate(names):
            lines.append(
                f"{name:<{width}} {cell(self.class_iou[k])} {cell(self.class_precision[k])}"
                f"{cell(self.class_recall[k])}{cell(self.class_dice[k])}"
                f"{int(self.class_pixels[k]):>12d}"
            )
        lines.append(f"{'mean':<{width}} {cell(self.miou)}{'':>19}{cell(self.mdice)}")
        return "\n".join(lines)
