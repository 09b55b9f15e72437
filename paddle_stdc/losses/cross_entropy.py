"""Cross-entropy with ignore_index, optional class weights and top-k pixel mining.

Semantics of PaddleSeg 2.8's ``CrossEntropyLoss`` (same class name and keyword arguments, so
PaddleSeg configs build it), rewritten to run on Paddle 3 (PaddleSeg's version hits
float32 x int64 promotion errors there). Top-k pixel mining follows DeepLab's
``top_k_percent_pixels``.
"""

from __future__ import annotations

from typing import Optional, Sequence, Union

import numpy as np
import paddle
import paddle.nn as nn

from paddle_stdc.losses._common import as_label, check_spatial, pixel_nll
from paddle_stdc.registry import register_loss

_EPS = 1e-8


@register_loss
class CrossEntropyLoss(nn.Layer):
    """Pixel-wise softmax cross-entropy: logit (N, C, H, W), label (N, H, W) -> 0-D loss.

    With per-pixel loss l_i = w[y_i] * -log softmax(logit_i)[y_i] (w = 1 without weights)
    and d_i the pixel's share of the denominator, the result is sum(l_i) / sum(d_i):

    * ``avg_non_ignore=True``: d_i = w[y_i] on valid pixels, 0 on ignored ones, i.e. the
      weighted mean over non-ignored pixels (PaddleSeg's mean(l) / mean(mask * w)).
    * ``avg_non_ignore=False``: d_i = w[y_i] on valid pixels and 1 on ignored ones (PaddleSeg
      divides by the pixel count; with weights it has no defined value for ignored pixels).
    * ``top_k_percent_pixels < 1``: only the k = int(p * N * H * W) pixels with the largest
      l_i enter both sums. Ignored pixels (l_i = 0) that fall in the top k add their d_i
      (0 when ``avg_non_ignore``), whereas PaddleSeg would count them with weight 1 or w[0].

    An all-ignored batch gives 0 (not NaN) with zero gradients.

    Args:
        weight: per-class weights (length C) or None.
        ignore_index: label value that contributes nothing.
        top_k_percent_pixels: fraction in (0, 1] of the hardest pixels to keep.
        avg_non_ignore: average over non-ignored pixels (True) or over all pixels.
        data_format: layout of ``logit``, 'NCHW' or 'NHWC' (the label is always (N, H, W)).
    """

    def __init__(
        self,
        weight: Optional[Union[Sequence[float], np.ndarray, paddle.Tensor]] = None,
        ignore_index: int = 255,
        top_k_percent_pixels: float = 1.0,
        avg_non_ignore: bool = True,
        data_format: str = "NCHW",
    ) -> None:
        super().__init__()
        if data_format not in ("NCHW", "NHWC"):
            raise ValueError(f"data_format must be 'NCHW' or 'NHWC', got {data_format!r}")
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ValueError(f"top_k_percent_pixels must be in (0, 1], got {top_k_percent_pixels}")
        self.ignore_index = int(ignore_index)
        self.top_k_percent_pixels = float(top_k_percent_pixels)
        self.avg_non_ignore = bool(avg_non_ignore)
        self.data_format = data_format
        if weight is None:
            self.weight = None
        else:
            if isinstance(weight, paddle.Tensor):
                weight = weight.numpy()
            weight = np.asarray(weight, dtype="float32")
            if weight.ndim != 1 or weight.size == 0:
                raise ValueError(f"weight must be a 1-D list of C class weights, got {weight}")
            self.weight = paddle.to_tensor(weight)

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        """logit (N, C, H, W) (or (N, H, W, C) for NHWC), label (N, H, W) or (N, 1, H, W)."""
        if self.data_format == "NHWC":
            logit = logit.transpose([0, 3, 1, 2])
        label = as_label(label)
        check_spatial(logit, label, "CrossEntropyLoss")
        num_classes = logit.shape[1]
        if self.weight is not None and self.weight.shape[0] != num_classes:
            raise ValueError(
                f"CrossEntropyLoss: {self.weight.shape[0]} class weights for {num_classes} "
                f"classes (logit {list(logit.shape)})"
            )
        valid = label != self.ignore_index
        nll = pixel_nll(logit, label, self.ignore_index)  # 0 at ignored pixels
        with paddle.no_grad():
            mask = valid.astype("float32")
            if self.weight is not None:
                safe_label = paddle.where(valid, label, paddle.zeros_like(label))
                pixel_weight = paddle.gather(self.weight, safe_label.reshape([-1]))
                pixel_weight = pixel_weight.reshape(label.shape) * mask
            else:
                pixel_weight = mask
            denom = pixel_weight if self.avg_non_ignore else pixel_weight + (1.0 - mask)
        loss = nll * pixel_weight
        if self.top_k_percent_pixels < 1.0:
            flat = loss.reshape([-1])
            k = max(1, int(self.top_k_percent_pixels * flat.shape[0]))
            top, idx = paddle.topk(flat, k)
            return top.sum() / (paddle.gather(denom.reshape([-1]), idx).sum() + _EPS)
        return loss.sum() / (denom.sum() + _EPS)
