"""Blocks shared by the STDC-Seg and BiSeNet families.

Parameter names follow PaddleSeg 2.8 (``_conv``, ``_batch_norm``) so that PaddleSeg's
released checkpoints load into our models without renaming.
"""

from __future__ import annotations

import paddle
import paddle.nn as nn
import paddle.nn.functional as F


def init_conv_bn(model: nn.Layer) -> None:
    """Kaiming-normal conv weights and BN weight 1 / bias 0 for every sublayer of ``model``."""
    for layer in model.sublayers():
        if isinstance(layer, nn.Conv2D):
            nn.initializer.KaimingNormal()(layer.weight)
        elif isinstance(layer, nn.BatchNorm2D):
            nn.initializer.Constant(1.0)(layer.weight)
            nn.initializer.Constant(0.0)(layer.bias)


class NonNeg(nn.Identity):
    """The identity, on a tensor that is >= 0 by construction (a ReLU output, sums of such, or
    their products with a sigmoid).

    It names the fact for :func:`paddle_stdc.export.prepare_for_export`, which replaces it by a
    ReLU (the identity on these values): Paddle Inference's oneDNN passes fuse "conv / multiply
    / add -> relu" into one oneDNN kernel, while the bare op runs on Paddle's several times
    slower native CPU kernel (see ``tools/benchmark.py``).
    """


class ConvBNReLU(nn.Layer):
    """Conv2D -> BN -> ReLU, with PaddleSeg's parameter names (``_conv``, ``_batch_norm``).

    The convolution keeps a bias by default, as PaddleSeg's ``layers.ConvBNReLU`` does.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str | None = None,
        groups: int = 1,
        bias: bool = True,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = kernel_size // 2
        self._conv = nn.Conv2D(
            in_channels,
            out_channels,
            kernel_size,
            stride=stride,
            padding=padding,
            groups=groups,
            bias_attr=None if bias else False,
        )
        self._batch_norm = nn.BatchNorm2D(out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self._batch_norm(self._conv(x)))


class ConvBN(ConvBNReLU):
    """Conv2D -> BN without activation (PaddleSeg's ``layers.ConvBN`` names)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self._batch_norm(self._conv(x))


class DepthwiseConvBN(nn.Layer):
    """Grouped conv with ``groups = in_channels`` (channel multiplier out/in) -> BN (-> ReLU).

    ``padding='same'`` as PaddleSeg: for stride 2 on even sizes it pads bottom/right only;
    ``padding=kernel_size // 2`` pads every side as PyTorch ports do. ``relu`` appends a ReLU
    (same parameter names), as CoinCheung's / mmseg's GE layers have after their depthwise conv.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | str = "same",
        relu: bool = False,
    ) -> None:
        super().__init__()
        block = ConvBNReLU if relu else ConvBN
        self.depthwise_conv = block(
            in_channels, out_channels, kernel_size, stride, padding=padding, groups=in_channels
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.depthwise_conv(x)


class SegHead(nn.Layer):
    """3x3 ConvBNReLU followed by a 1x1 classifier: (N, C_in, H, W) -> (N, K, H, W)."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, mid_channels, 3)
        self.conv_out = nn.Conv2D(mid_channels, num_classes, kernel_size=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv_out(self.conv(x))


class AttentionRefinementModule(nn.Layer):
    """ARM (BiSeNet): 3x3 conv, then channel attention from global context."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = ConvBNReLU(in_channels, out_channels, 3)
        self.conv_atten = nn.Conv2D(out_channels, out_channels, kernel_size=1)
        self.bn_atten = nn.BatchNorm2D(out_channels)
        self.gated = NonNeg()  # ReLU output times a sigmoid

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        feat = self.conv(x)
        atten = global_avg_pool(feat)
        atten = F.sigmoid(self.bn_atten(self.conv_atten(atten)))
        return self.gated(feat * atten)


class FeatureFusionModule(nn.Layer):
    """FFM (BiSeNet): fuse spatial and context features with a squeeze-excite residual."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2D(out_channels, out_channels // 4, kernel_size=1)
        self.conv2 = nn.Conv2D(out_channels // 4, out_channels, kernel_size=1)
        self.gated = NonNeg()  # ReLU output times a sigmoid
        self.fused = NonNeg()  # ... plus the ReLU output

    def forward(self, fsp: paddle.Tensor, fcp: paddle.Tensor) -> paddle.Tensor:
        feat = self.convblk(paddle.concat([fsp, fcp], axis=1))
        atten = global_avg_pool(feat)
        atten = F.sigmoid(self.conv2(F.relu(self.conv1(atten))))
        return self.fused(self.gated(feat * atten) + feat)


def global_avg_pool(x: paddle.Tensor) -> paddle.Tensor:
    """(N, C, H, W) -> (N, C, 1, 1) mean.

    Same values as ``adaptive_avg_pool2d(x, 1)``, but a reduction instead of a pool2d op:
    Paddle Inference's CPU pool2d kernel took ~10 ms per call on STDC-Seg's stride-8 maps.
    """
    return x.mean(axis=[2, 3], keepdim=True)


def resize_to(x: paddle.Tensor, size, mode: str = "bilinear") -> paddle.Tensor:
    """Resize (N, C, H, W) to ``size`` (H, W); bilinear uses align_corners=True (PaddleSeg)."""
    if mode == "nearest":
        return F.interpolate(x, size, mode="nearest")
    return F.interpolate(x, size, mode=mode, align_corners=True)
