"""Online hard example mining (OHEM) cross-entropy.

From "Training Region-based Object Detectors with Online Hard Example Mining" (CVPR 2016) as
used by BiSeNet/STDC; semantics of PaddleSeg 2.8's ``OhemCrossEntropyLoss``, written for
Paddle 3 (no 0-D indexing, no float32 x int64 promotion) with ``kthvalue`` instead of a full
argsort.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn

from paddle_stdc.losses._common import as_label, check_spatial, pixel_nll
from paddle_stdc.registry import register_loss

_EPS = 1e-5


@register_loss
class OhemCrossEntropyLoss(nn.Layer):
    """Cross-entropy over the hard pixels only: logit (N, C, H, W), label (N, H, W) -> scalar.

    Let p be the softmax probability of the true class of each valid pixel. When there are
    more than ``min_kept`` valid pixels, the threshold is max(``thresh``, the
    ``min_kept``-th smallest p) and only pixels with p < threshold are kept; otherwise every
    valid pixel is kept. As in PaddleSeg, the result is mean(loss * kept) / (mean(kept) + 1e-5),
    i.e. the mean loss over kept pixels.

    Args:
        thresh: probability below which a pixel counts as hard.
        min_kept: at least this many pixels (if available) are kept.
        ignore_index: label value that contributes nothing.
    """

    def __init__(self, thresh: float = 0.7, min_kept: int = 10000, ignore_index: int = 255) -> None:
        super().__init__()
        self.thresh = float(thresh)
        self.min_kept = int(min_kept)
        self.ignore_index = ignore_index

    def _kept_mask(self, prob: paddle.Tensor, valid: paddle.Tensor) -> paddle.Tensor:
        """prob, valid: flat (P,) -> float mask of the pixels that enter the loss."""
        num_valid = int(valid.sum())
        if self.min_kept <= 0 or num_valid <= self.min_kept:
            return valid.astype("float32")
        # Ignored pixels get prob 2 so they sort after every valid one.
        masked = paddle.where(valid, prob, paddle.full_like(prob, 2.0))
        kth, _ = paddle.kthvalue(masked, self.min_kept)
        threshold = paddle.maximum(kth, paddle.to_tensor(self.thresh, dtype=prob.dtype))
        return paddle.logical_and(valid, masked < threshold).astype("float32")

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        label = as_label(label)
        check_spatial(logit, label, "OhemCrossEntropyLoss")
        valid = label != self.ignore_index
        nll = pixel_nll(logit, label, self.ignore_index)
        with paddle.no_grad():
            kept = self._kept_mask(paddle.exp(-nll).reshape([-1]), valid.reshape([-1]))
        kept = kept.reshape(label.shape)
        kept.stop_gradient = True
        return (nll * kept).mean() / (kept.mean() + _EPS)
