"""Helpers shared by the losses: label shape/dtype normalisation and shape checks."""

from __future__ import annotations

import paddle


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
