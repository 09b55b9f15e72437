"""Cross-entropy with ignore_index, optional class weights and top-k pixel mining.

Semantics of PaddleSeg 2.8's ``CrossEntropyLoss`` (config-compatible arguments), written
to run on Paddle 3: the loss is averaged over non-ignored pixels, weighted by the class
weight of each pixel's label when ``weight`` is given.
"""

from __future__ import annotations

from typing import Optional, Sequence

import paddle
import paddle.nn as nn

from paddle_stdc.losses._common import as_label, check_spatial, pixel_nll
from paddle_stdc.registry import register_loss

_EPS = 1e-8


@register_loss
class CrossEntropyLoss(nn.Layer):
    """Pixel-wise softmax cross-entropy: logit (N, C, H, W), label (N, H, W) -> scalar.

    Args:
        weight: per-class weights (length C) or None.
        ignore_index: label value that contributes nothing.
        top_k_percent_pixels: keep only the hardest fraction of pixels (1.0 keeps all).
        avg_non_ignore: average over non-ignored pixels (True) or over all pixels.
        data_format: only 'NCHW' is supported.
    """

    def __init__(
        self,
        weight: Optional[Sequence[float]] = None,
        ignore_index: int = 255,
        top_k_percent_pixels: float = 1.0,
        avg_non_ignore: bool = True,
        data_format: str = "NCHW",
    ) -> None:
        super().__init__()
        if data_format != "NCHW":
            raise ValueError(
                f"CrossEntropyLoss supports data_format='NCHW' only, got {data_format}"
            )
        if not 0.0 < top_k_percent_pixels <= 1.0:
            raise ValueError(f"top_k_percent_pixels must be in (0, 1], got {top_k_percent_pixels}")
        self.ignore_index = ignore_index
        self.top_k_percent_pixels = top_k_percent_pixels
        self.avg_non_ignore = avg_non_ignore
        self.weight = None if weight is None else paddle.to_tensor(list(weight), dtype="float32")

    def forward(self, logit: paddle.Tensor, label: paddle.Tensor) -> paddle.Tensor:
        label = as_label(label)
        check_spatial(logit, label, "CrossEntropyLoss")
        num_classes = logit.shape[1]
        if self.weight is not None and self.weight.shape[0] != num_classes:
            raise ValueError(
                f"CrossEntropyLoss: {self.weight.shape[0]} class weights for {num_classes} classes"
            )
        valid = label != self.ignore_index
        safe_label = paddle.where(valid, label, paddle.zeros_like(label))
        nll = pixel_nll(logit, label, self.ignore_index)
        mask = valid.astype("float32")
        denom_mask = mask if self.avg_non_ignore else paddle.ones_like(mask)
        if self.weight is not None:
            pixel_weight = paddle.gather(self.weight, safe_label.reshape([-1]))
            pixel_weight = pixel_weight.reshape(safe_label.shape)
            mask, denom_mask = mask * pixel_weight, denom_mask * pixel_weight
        loss = nll * mask
        if self.top_k_percent_pixels < 1.0:
            flat = loss.reshape([-1])
            k = max(1, int(self.top_k_percent_pixels * flat.shape[0]))
            top, idx = paddle.topk(flat, k)
            return top.sum() / (paddle.gather(denom_mask.reshape([-1]), idx).sum() + _EPS)
        return loss.sum() / (denom_mask.sum() + _EPS)
