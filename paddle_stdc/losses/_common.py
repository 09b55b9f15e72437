"""Helpers shared by the losses: label shape/dtype normalisation and shape checks."""

from __future__ import annotations

import paddle
import paddle.nn.functional as F


def as_label(label: paddle.Tensor) -> paddle.Tensor:
    """(N, H, W) or (N, 1, H, W) integer label -> (N, H, W) int64, no gradient."""
    if label.ndim == 4:
        if label.shape[1] != 1:
            raise ValueError(f"a 4-D label must be (N, 1, H, W), got {list(label.shape)}")
        label = label.squeeze(1)
    if label.ndim != 3:
        raise ValueError(f"label must be (N, H, W) or (N, 1, H, W), got {list(label.shape)}")
    label = label.astype("int64")
    label.stop_gradient = True
    return label


def check_spatial(logit: paddle.Tensor, label: paddle.Tensor, loss_name: str) -> None:
    if list(logit.shape[2:]) != list(label.shape[1:]) or logit.shape[0] != label.shape[0]:
        raise ValueError(
            f"{loss_name}: logit {list(logit.shape)} and label {list(label.shape)} disagree in "
            "batch or spatial size; the model must upsample this output to the label size"
        )


def pixel_nll(logit: paddle.Tensor, label: paddle.Tensor, ignore_index: int) -> paddle.Tensor:
    """Per-pixel negative log-likelihood (N, H, W) float32; 0 at ignored pixels.

    Uses Paddle's fused softmax-cross-entropy kernel (about 3x faster on CPU than
    log_softmax + take_along_axis, forward and backward).
    """
    loss = F.cross_entropy(
        logit.astype("float32"),
        label.unsqueeze(1),
        ignore_index=ignore_index,
        reduction="none",
        axis=1,
    )
    return loss.squeeze(1)
