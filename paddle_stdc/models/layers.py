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


def nonneg(x: paddle.Tensor) -> paddle.Tensor:
    """Mark ``x`` (known to be >= 0) for export: the identity, written as ReLU in static graphs.

    ReLU is the identity on non-negative values, so the exported network computes the same
    numbers; but Paddle Inference's oneDNN passes fuse "conv/multiply/add -> relu" into one
    oneDNN kernel, while the bare op runs on Paddle's native CPU kernel, which is several
    times slower for broadcasting elementwise ops and depthwise convs (see
    ``tools/benchmark.py``). Dygraph (training, evaluation) returns ``x`` unchanged.
    """
    return x if paddle.in_dynamic_mode() else F.relu(x)


def norm_layer(num_features: int) -> nn.Layer:
    """BatchNorm that becomes SyncBatchNorm when training data-parallel on GPU.

    ``SyncBatchNorm`` has no CPU kernel, so on CPU (or single process) plain BN is used;
    the trainer converts the model with ``convert_sync_batchnorm`` when it applies.
    """
    return nn.BatchNorm2D(num_features)


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
        self._batch_norm = norm_layer(out_channels)

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

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        feat = self.conv(x)
        atten = global_avg_pool(feat)
        atten = F.sigmoid(self.bn_atten(self.conv_atten(atten)))
        return nonneg(feat * atten)  # ReLU output times a sigmoid


class FeatureFusionModule(nn.Layer):
    """FFM (BiSeNet): fuse spatial and context features with a squeeze-excite residual."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1)
        self.conv1 = nn.Conv2D(out_channels, out_channels // 4, kernel_size=1)
        self.conv2 = nn.Conv2D(out_channels // 4, out_channels, kernel_size=1)

    def forward(self, fsp: paddle.Tensor, fcp: paddle.Tensor) -> paddle.Tensor:
        feat = self.convblk(paddle.concat([fsp, fcp], axis=1))
        atten = global_avg_pool(feat)
        atten = F.sigmoid(self.conv2(F.relu(self.conv1(atten))))
        return nonneg(nonneg(feat * atten) + feat)  # ReLU output times a sigmoid, plus itself


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
