"""Detail aggregation loss of STDC-Seg: boundary supervision for the detail head.

Paper: Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021;
reference code MichaelFan01/STDC-Seg ``loss/detail_loss.py`` and PaddleSeg 2.8
``DetailAggregateLoss``. Boundary targets come from a 3x3 Laplacian of the label map at
strides 1, 2 and 4 (strides 2 and 4 upsampled back), fused by a 1x1 kernel and binarised;
the loss is binary cross-entropy plus Dice on the detail logits.

The fuse kernel is a fixed buffer initialised to (0.6, 0.3, 0.1), as in mmsegmentation
(PaddleSeg draws it at random and never trains it). The official train.py hands it to its SGD
with weight decay 5e-4: it never gets a gradient (hard threshold after it), but the decay
shrinks it to about 0.21x over 60k iterations, which changes the targets. ``kernel_decay``
reproduces that: the kernel is then a function of the iteration and the optimizer's schedule
(:meth:`DetailAggregateLoss.bind_schedule`, :meth:`DetailAggregateLoss.set_iteration`).
"""

from __future__ import annotations

from typing import Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_stdc.losses._common import as_label
from paddle_stdc.registry import register_loss

_LAPLACIAN = [-1.0, -1.0, -1.0, -1.0, 8.0, -1.0, -1.0, -1.0, -1.0]


def dice_loss(prob: paddle.Tensor, target: paddle.Tensor, smooth: float = 1.0) -> paddle.Tensor:
    """1 - Dice per sample, averaged over the batch; prob and target (N, 1, H, W)."""
    n = prob.shape[0]
    p, t = prob.reshape([n, -1]), target.reshape([n, -1])
    dice = (2.0 * (p * t).sum(1) + smooth) / (p.sum(1) + t.sum(1) + smooth)
    return (1.0 - dice).mean()


def decayed_kernels(
    init: Sequence[float], lrs: Sequence[float], weight_decay: float, momentum: float
) -> np.ndarray:
    """The fuse kernel under the official train.py's SGD, which decays it with a zero gradient.

    Row ``k`` of the (len(lrs) + 1, 3) float32 result is the kernel after ``k`` updates; update
    ``k`` uses ``lrs[k]``. In float32, as torch.optim.SGD: d = wd * p; buf = d on the first
    update, then momentum * buf + d; p = p - lr * buf.
    """
    f32 = np.float32
    p = np.asarray(init, dtype=f32).reshape(-1).copy()
    buf = None
    wd, mom = f32(weight_decay), f32(momentum)
    out = np.empty((len(lrs) + 1, p.size), dtype=f32)
    out[0] = p
    for k, lr in enumerate(lrs):
        d = (wd * p).astype(f32)
        buf = d if buf is None else (mom * buf).astype(f32) + d
        p = (p - (f32(lr) * buf).astype(f32)).astype(f32)
        out[k + 1] = p
    return out


@register_loss
class DetailAggregateLoss(nn.Layer):
    """BCE + Dice between detail logits (N, 1, h, w) and boundary targets from label (N, H, W).

    Targets: the label map (as float, ignore pixels included as their raw value, e.g. 255,
    like the official code and PaddleSeg) is convolved with the 3x3 Laplacian at strides 1,
    2 and 4 (zero padding 1), clipped at 0, the stride 2/4 maps nearest-upsampled to (H, W);
    each map > 0.1 gives a binary (N, 1, H, W) map; the three are fused by the 1x1 conv
    ``fuse_kernel`` and fused > 0.1 is the target. Because of the zero padding and the raw
    label values, the image border counts as boundary wherever the label is non-zero, so an
    all-ignored label map gives a finite, non-zero loss (official behaviour), unlike the
    cross-entropy losses. PaddleSeg's unused stride-8 target is not computed.

    Loss: BCE-with-logits (mean over pixels) + Dice loss (smooth 1, per sample, batch mean)
    on the logits, upsampled bilinearly (align_corners=True) to (H, W) if smaller.

    ``fuse_kernel`` (1, 3, 1, 1) is a non-persistable buffer (not trained, not saved) equal to
    ``fuse_init``, or with ``kernel_decay`` to the official train.py's decayed kernel at the
    current iteration (the trainer calls :meth:`bind_schedule` once and :meth:`set_iteration`
    before every step, so a resumed run uses the same kernel as an uninterrupted one).

    Args:
        ignore_index: accepted for config compatibility; unused (see above).
        fuse_init: weights of the stride 1, 2, 4 boundary maps (0.6, 0.3, 0.1).
        kernel_decay: False (default; PaddleSeg, mmseg): the kernel stays ``fuse_init``.
            True: the kernel follows the official optimizer's weight decay (the config's
            ``optimizer.weight_decay`` and ``momentum``, and its LR schedule).
    """

    def __init__(
        self,
        ignore_index: int = 255,
        fuse_init: Sequence[float] = (0.6, 0.3, 0.1),
        kernel_decay: bool = False,
    ) -> None:
        super().__init__()
        if len(fuse_init) != 3:
            raise ValueError(f"fuse_init needs 3 weights (strides 1, 2, 4), got {fuse_init}")
        self.ignore_index = ignore_index
        self.fuse_init = tuple(float(v) for v in fuse_init)
        self.kernel_decay = bool(kernel_decay)
        self._trajectory: Optional[np.ndarray] = None
        self.register_buffer(
            "laplacian_kernel",
            paddle.to_tensor(_LAPLACIAN, dtype="float32").reshape([1, 1, 3, 3]),
            persistable=False,
        )
        self.register_buffer("fuse_kernel", self._kernel(self.fuse_init), persistable=False)

    @staticmethod
    def _kernel(values: Sequence[float]) -> paddle.Tensor:
        return paddle.to_tensor(np.asarray(values, dtype="float32").reshape([1, 3, 1, 1]))

    def bind_schedule(self, lrs: Sequence[float], weight_decay: float, momentum: float) -> None:
        """With ``kernel_decay``: precompute the kernel for every step from the optimizer's
        learning rates ``lrs[k]`` (update k), weight decay and momentum; else nothing."""
        if self.kernel_decay:
            self._trajectory = decayed_kernels(self.fuse_init, lrs, weight_decay, momentum)
            self.set_iteration(0)

    def set_iteration(self, step: int) -> None:
        """Use the kernel after ``step`` optimizer updates (0 before the first; the last
        precomputed one beyond the schedule). No-op without ``kernel_decay``."""
        if not self.kernel_decay:
            return
        if self._trajectory is None:
            raise RuntimeError(
                "DetailAggregateLoss(kernel_decay=True) needs the optimizer's schedule: call "
                "bind_schedule(lrs, weight_decay, momentum) (the trainer does)"
            )
        row = self._trajectory[min(max(int(step), 0), len(self._trajectory) - 1)]
        self.fuse_kernel = self._kernel(row)

    def boundary_targets(self, label: paddle.Tensor) -> paddle.Tensor:
        """Binary boundary map (N, 1, H, W) float32 of an (N, H, W) label map."""
        lbl = as_label(label).unsqueeze(1).astype("float32")
        size = lbl.shape[2:]
        maps = []
        for stride in (1, 2, 4):
            edge = F.conv2d(lbl, self.laplacian_kernel, stride=stride, padding=1).clip(min=0)
            if stride > 1:
                edge = F.interpolate(edge, size, mode="nearest")
            maps.append((edge > 0.1).astype("float32"))
        fused = F.conv2d(paddle.concat(maps, axis=1), self.fuse_kernel)
        return (fused > 0.1).astype("float32")

    def forward(self, logits: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        """logits (N, 1, h, w) float, label (N, H, W) or (N, 1, H, W) integer -> 0-D float32.

        Logits smaller than the label are upsampled bilinearly (align_corners=True).
        """
        if logits.ndim != 4 or logits.shape[1] != 1 or logits.shape[0] != label.shape[0]:
            raise ValueError(
                f"DetailAggregateLoss: detail logits must be (N, 1, h, w) with the label's "
                f"batch size, got logits {list(logits.shape)} and label {list(label.shape)}"
            )
        if self.kernel_decay and self._trajectory is None:
            self.set_iteration(0)  # raises: the schedule is unknown
        with paddle.no_grad():
            target = self.boundary_targets(label)
        logits = logits.astype("float32")
        if list(logits.shape[2:]) != list(target.shape[2:]):
            logits = F.interpolate(logits, target.shape[2:], mode="bilinear", align_corners=True)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + dice_loss(F.sigmoid(logits), target)
