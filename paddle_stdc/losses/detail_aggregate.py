"""Detail aggregation loss of STDC-Seg: boundary supervision for the detail head.

Paper: Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021;
reference code MichaelFan01/STDC-Seg ``loss/detail_loss.py`` and PaddleSeg 2.8
``DetailAggregateLoss``. Boundary targets come from a 3x3 Laplacian of the label map at
strides 1, 2 and 4 (strides 2 and 4 upsampled back), fused by a 1x1 kernel and binarised;
the loss is binary cross-entropy plus Dice on the detail logits.

Difference from PaddleSeg: the fuse kernel is a parameter of this layer, initialised to
(0.6, 0.3, 0.1) as in the official code, so it is in ``parameters()`` (the trainer hands it to
the optimizer) and in ``state_dict()`` (checkpoints keep it). PaddleSeg creates it outside
the layer with a random init, never trains it and never saves it. As in the official code,
the hard threshold after the fuse conv blocks its gradient, so it keeps its initial value
in practice; it carries no weight decay.
"""

from __future__ import annotations

from typing import Sequence

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

    ``fuse_kernel`` (1, 3, 1, 1) is a registered parameter initialised to ``fuse_init``,
    without weight decay. The threshold after the fuse conv has no gradient (same in the
    official code), so an optimizer holding it leaves it at its initial value.

    Args:
        ignore_index: accepted for config compatibility; unused (see above).
        fuse_init: initial weights of the stride 1, 2, 4 boundary maps.
    """

    def __init__(
        self, ignore_index: int = 255, fuse_init: Sequence[float] = (0.6, 0.3, 0.1)
    ) -> None:
        super().__init__()
        if len(fuse_init) != 3:
            raise ValueError(f"fuse_init needs 3 weights (strides 1, 2, 4), got {fuse_init}")
        self.ignore_index = ignore_index
        self.register_buffer(
            "laplacian_kernel",
            paddle.to_tensor(_LAPLACIAN, dtype="float32").reshape([1, 1, 3, 3]),
            persistable=False,
        )
        self.fuse_kernel = self.create_parameter(
            shape=[1, 3, 1, 1],
            dtype="float32",
            attr=paddle.ParamAttr(regularizer=paddle.regularizer.L2Decay(0.0)),
            default_initializer=nn.initializer.Assign(
                paddle.to_tensor(list(fuse_init), dtype="float32").reshape([1, 3, 1, 1])
            ),
        )

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
        with paddle.no_grad():
            target = self.boundary_targets(label)
        logits = logits.astype("float32")
        if list(logits.shape[2:]) != list(target.shape[2:]):
            logits = F.interpolate(logits, target.shape[2:], mode="bilinear", align_corners=True)
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + dice_loss(F.sigmoid(logits), target)
