"""Scan a dataset's files before training: problems by file, and per-class pixel statistics.

Reads every sample with the same checks as training (:mod:`paddle_stdc.data.datasets`) but
without transforms, in parallel processes, and never stops at the first problem.
"""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from paddle_stdc.data.datasets import DataError, read_checked


@dataclass
class DatasetReport:
    """What :func:`scan_dataset` found in one dataset."""

    name: str
    num_samples: int
    num_classes: int
    ignore_index: int
    problems: List[str] = field(default_factory=list)
    pixels: Optional[np.ndarray] = None  # (num_classes + 1,): per class, then ignore_index
    sizes: Dict[Tuple[int, int], int] = field(default_factory=dict)  # (W, H) -> count
    #: What the transforms pad labels with, one line per transform (set by the caller).
    label_padding: List[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def summary(self, class_names: Optional[Sequence[str]] = None, max_problems: int = 20) -> str:
        lines = [f"{self.name}: {self.num_samples} samples, {len(self.problems)} problems"]
        lines += [f"  ! {p}" for p in self.problems[:max_problems]]
        if len(self.problems) > max_problems:
            lines.append(f"  ! ... and {len(self.problems) - max_problems} more")
        sizes = ", ".join(f"{w}x{h}: {n}" for (w, h), n in sorted(self.sizes.items()))
        lines.append(f"  image sizes (WxH: count): {sizes or '-'}")
        lines.append(f"  label values allowed: 0..{self.num_classes - 1}, ignore_index {self.ignore_index}")  # fmt: skip
        for text in self.label_padding or ["no transform pads labels"]:
            lines.append(f"  label padding: {text}")
        if self.pixels is not None and self.pixels.sum() > 0:
            total = self.pixels.sum()
            lines.append("  class  pixels %   (share of all labelled pixels, ignore_index last)")
            for k in range(self.num_classes):
                name = class_names[k] if class_names and k < len(class_names) else str(k)
                flag = "   <- absent" if self.pixels[k] == 0 else ""
                lines.append(f"  {name:>14} {100 * self.pixels[k] / total:7.3f}{flag}")
            lines.append(f"  {'ignore':>14} {100 * self.pixels[-1] / total:7.3f}")
        return "\n".join(lines)


def _scan_one(
    pair: Tuple[str, Optional[str]], channels: int, num_classes: int, ignore_index: int
) -> Tuple[Optional[str], Optional[Tuple[int, int]], Optional[np.ndarray]]:
    """(problem or None, image (W, H), per-class pixel counts) of one sample."""
    try:
        image, label = read_checked(*pair, channels, num_classes, ignore_index)
    except DataError as err:
        return str(err), None, None
    size = (int(image.shape[1]), int(image.shape[0]))
    if label is None:
        return None, size, None
    counts = np.bincount(label.ravel().astype(np.int64), minlength=max(256, num_classes))
    pixels = np.zeros(num_classes + 1, np.int64)
    pixels[:num_classes] = counts[:num_classes]
    if ignore_index < len(counts):
        pixels[-1] = counts[ignore_index]
    return None, size, pixels


def scan_dataset(dataset, name: str = "dataset", num_workers: Optional[int] = None) -> DatasetReport:
    """Check every sample of a paddle_stdc dataset (``file_list``, ``num_classes`` ...)."""
    report = DatasetReport(
        name, len(dataset.file_list), dataset.num_classes, dataset.ignore_index,
        problems=list(getattr(dataset, "init_problems", [])),
        pixels=np.zeros(dataset.num_classes + 1, np.int64),
    )  # fmt: skip
    args = (getattr(dataset, "img_channels", 3), dataset.num_classes, dataset.ignore_index)
    workers = num_workers if num_workers is not None else (os.cpu_count() or 1)
    pairs = [tuple(p) for p in dataset.file_list]
    if workers <= 1:
        results = [_scan_one(p, *args) for p in pairs]
    else:
        with ProcessPoolExecutor(workers) as pool:
            n = len(pairs)
            results = list(pool.map(_scan_one, pairs, *([a] * n for a in args), chunksize=16))
    for problem, size, pixels in results:
        if problem:
            report.problems.append(problem)
        if size:
            report.sizes[size] = report.sizes.get(size, 0) + 1
        if pixels is not None:
            report.pixels += pixels
    return report


__all__ = ["DatasetReport", "scan_dataset"]
