"""Online hard example mining (OHEM) cross-entropy for semantic segmentation.

OHEM is from Shrivastava et al., "Training Region-based Object Detectors with Online Hard
Example Mining" (CVPR 2016); this pixel-wise form is the one BiSeNet and STDC-Seg train with.
Semantics of PaddleSeg 2.8's ``OhemCrossEntropyLoss`` (same class name and keyword
arguments), rewritten for Paddle 3: PaddleSeg's version indexes 0-D tensors and calls
``int()`` on them, which fails there. This one uses ``kthvalue`` instead of a full argsort
and makes no host round trip.
"""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn

from paddle_stdc.losses._common import as_label, check_spatial, pixel_nll
from paddle_stdc.registry import register_loss

_EPS = 1e-5


@register_loss
class OhemCrossEntropyLoss(nn.Layer):
    """Cross-entropy over the hard pixels only: logit (N, C, H, W), label (N, H, W) -> 0-D loss.

    Let p be the softmax probability of the true class of each valid (non-ignored) pixel.

    * More than ``min_kept`` valid pixels: threshold = max(``thresh``, the ``min_kept``-th
      smallest p) (just ``thresh`` when ``min_kept == 0``), and only pixels with
      p < threshold (strict) are kept.
    * Otherwise every valid pixel is kept.

    The result is PaddleSeg's mean(loss * kept) / (mean(kept) + 1e-5): the mean
    cross-entropy over the kept pixels, shrunk by a negligible 1e-5 / fraction_kept, and
    exactly 0 (zero gradients) when nothing is kept, e.g. an all-ignored batch.

    One difference: with ``min_kept == 0`` PaddleSeg skips the mining entirely (plain CE);
    here the threshold ``thresh`` applies, as in the STDC/BiSeNet reference OHEM.

    ``keep_exactly=True`` is the official STDC-Seg ``OhemCELoss`` with ``n_min = min_kept``:
    over the batch's per-pixel losses l (0 at ignored pixels), sorted in descending order, if
    the (n_min + 1)-th largest exceeds -log(``thresh``) the mean of every l > -log(thresh) is
    taken, else the mean of the n_min largest (ignored pixels included when they are among
    them). It needs ``0 < min_kept`` < pixels in the batch (the official code fails otherwise).
    PaddleSeg's semantics keep ``min_kept - 1`` pixels in the second case and divide by
    kept + 1e-5 x pixels.

    Args:
        thresh: probability below which a pixel counts as hard.
        min_kept: at least this many pixels (if available) are kept.
        ignore_index: label value that contributes nothing.
        keep_exactly: the official n_min semantics above (default False: PaddleSeg's).
    """

    def __init__(
        self,
        thresh: float = 0.7,
        min_kept: int = 10000,
        ignore_index: int = 255,
        keep_exactly: bool = False,
    ) -> None:
        super().__init__()
        if min_kept < 0 or (keep_exactly and min_kept == 0):
            raise ValueError(f"min_kept must be >= 0 (> 0 with keep_exactly), got {min_kept}")
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = int(ignore_index)
        self.keep_exactly = bool(keep_exactly)

    def kept_mask(self, prob: paddle.Tensor, valid: paddle.Tensor) -> paddle.Tensor:
        """Float mask (P,) of the pixels that enter the loss; prob (P,) float, valid (P,) bool."""
        num_pixels = prob.shape[0]
        if self.min_kept >= num_pixels:  # then num_valid <= min_kept: keep every valid pixel
            return valid.astype("float32")
        thresh = paddle.full([], self.thresh, dtype=prob.dtype)
        if self.min_kept == 0:
            threshold = thresh
        else:
            # Ignored pixels get p = 2 so that they sort after every valid one.
            masked = paddle.where(valid, prob, paddle.full_like(prob, 2.0))
            kth, _ = paddle.kthvalue(masked, self.min_kept)
            mined = paddle.maximum(kth, thresh)
            # Few valid pixels: an infinite threshold keeps them all (p <= 1).
            enough = valid.astype("int64").sum() > self.min_kept
            threshold = paddle.where(enough, mined, paddle.full_like(mined, float("inf")))
        return paddle.logical_and(valid, prob < threshold).astype("float32")

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        """logit (N, C, H, W) float, label (N, H, W) or (N, 1, H, W) integer -> 0-D float32."""
        label = as_label(label)
        check_spatial(logit, label, "OhemCrossEntropyLoss")
        valid = label != self.ignore_index
        nll = pixel_nll(logit, label, self.ignore_index)  # 0 at ignored pixels
        if self.keep_exactly:
            return self.official_loss(nll.reshape([-1]))
        with paddle.no_grad():
            prob = paddle.exp(-nll.detach()).reshape([-1])
            kept = self.kept_mask(prob, valid.reshape([-1])).reshape(label.shape)
        return (nll * kept).mean() / (kept.mean() + _EPS)

    def official_loss(self, nll: paddle.Tensor) -> paddle.Tensor:
        """The official ``OhemCELoss`` on the flat per-pixel losses ``nll`` (P,)."""
        n_min = self.min_kept
        if n_min >= nll.shape[0]:
            raise ValueError(
                f"OhemCrossEntropyLoss(keep_exactly=True): min_kept {n_min} must be smaller "
                f"than the batch's {nll.shape[0]} pixels"
            )
        loss_thresh = float(-np.log(np.float32(self.thresh)))
        top, _ = paddle.topk(nll, n_min + 1)
        hard = (nll > loss_thresh).astype(nll.dtype)
        hard_mean = (nll * hard).sum() / paddle.clip(hard.sum(), min=1.0)
        top_mean = top[:n_min].mean()
        return paddle.where(top[n_min] > loss_thresh, hard_mean, top_mean)
