"""ResNet (deep or plain stem), output stride 32, for BiSeNetV1's context path.

Paper: He et al., "Deep Residual Learning for Image Recognition", CVPR 2016; the deep stem
(three 3x3 convs) and the two downsampling shortcuts follow He et al., "Bag of Tricks for
Image Classification", CVPR 2019. Reference code: mmsegmentation ``ResNetV1c``/``ResNetV1d``
and PaddleClas/PaddleSeg ``ResNet_vd``.

``stem`` selects the stem (before the 3x3/2 max pool):

- ``"deep"``: three 3x3 convs (32, 32, 64 channels), the first strided (ResNetV1c/vd),
- ``"plain"``: one 7x7/2 conv to 64 channels (torchvision's ResNet, mmsegmentation's ``ResNet``
  as its BiSeNetV1 configs build it, CoinCheung/BiSeNet's ``Resnet18``).

``shortcut`` selects the downsampling shortcut:

- ``"conv"``: a strided 1x1 conv (ResNetV1c; mmsegmentation's ImageNet weights),
- ``"avgpool"``: 2x2 average pooling, then a 1x1 conv (ResNet-vd / V1d; PaddleClas weights).

Parameter names follow mmsegmentation's ResNet (``stem.0``, ``layer1.0.conv1``, ``bn1``,
``downsample.0``) so weight converters map them one to one; the plain stem is ``stem.0`` (conv)
and ``stem.1`` (BN), i.e. torchvision's ``conv1`` and ``bn1``.

Blocks -> model class -> registered variants.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_stdc.models.layers import init_conv_bn
from paddle_stdc.registry import register_backbone


def _conv(in_ch: int, out_ch: int, kernel: int, stride: int = 1) -> nn.Conv2D:
    return nn.Conv2D(in_ch, out_ch, kernel, stride=stride, padding=kernel // 2, bias_attr=False)


def _downsample(in_ch: int, out_ch: int, stride: int, shortcut: str) -> Optional[nn.Sequential]:
    if stride == 1 and in_ch == out_ch:
        return None
    if shortcut == "avgpool" and stride > 1:
        return nn.Sequential(
            nn.AvgPool2D(stride, stride, ceil_mode=True),
            _conv(in_ch, out_ch, 1),
            nn.BatchNorm2D(out_ch),
        )
    return nn.Sequential(_conv(in_ch, out_ch, 1, stride), nn.BatchNorm2D(out_ch))


class BasicBlock(nn.Layer):
    """Two 3x3 convs with a residual (ResNet-18/34)."""

    expansion = 1

    def __init__(self, in_ch: int, width: int, stride: int, shortcut: str) -> None:
        super().__init__()
        self.conv1 = _conv(in_ch, width, 3, stride)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = _conv(width, width, 3)
        self.bn2 = nn.BatchNorm2D(width)
        self.downsample = _downsample(in_ch, width, stride, shortcut)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


class Bottleneck(nn.Layer):
    """1x1 reduce, 3x3 (strided), 1x1 expand x4, with a residual (ResNet-50/101)."""

    expansion = 4

    def __init__(self, in_ch: int, width: int, stride: int, shortcut: str) -> None:
        super().__init__()
        out_ch = width * self.expansion
        self.conv1 = _conv(in_ch, width, 1)
        self.bn1 = nn.BatchNorm2D(width)
        self.conv2 = _conv(width, width, 3, stride)
        self.bn2 = nn.BatchNorm2D(width)
        self.conv3 = _conv(width, out_ch, 1)
        self.bn3 = nn.BatchNorm2D(out_ch)
        self.downsample = _downsample(in_ch, out_ch, stride, shortcut)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        identity = x if self.downsample is None else self.downsample(x)
        return F.relu(out + identity)


_DEPTHS = {18: (BasicBlock, (2, 2, 2, 2)), 34: (BasicBlock, (3, 4, 6, 3)),
           50: (Bottleneck, (3, 4, 6, 3)), 101: (Bottleneck, (3, 4, 23, 3))}  # fmt: skip


def _stem(in_channels: int, stem: str) -> nn.Sequential:
    """Conv-BN-ReLU stem at stride 2, (N, C_in, H, W) -> (N, 64, H/2, W/2)."""
    if stem == "plain":
        return nn.Sequential(_conv(in_channels, 64, 7, 2), nn.BatchNorm2D(64), nn.ReLU())
    return nn.Sequential(
        _conv(in_channels, 32, 3, 2), nn.BatchNorm2D(32), nn.ReLU(),
        _conv(32, 32, 3), nn.BatchNorm2D(32), nn.ReLU(),
        _conv(32, 64, 3), nn.BatchNorm2D(64), nn.ReLU(),
    )  # fmt: skip


class ResNet(nn.Layer):
    """ResNet: (N, C_in, H, W) -> features at strides 4, 8, 16, 32.

    Args:
        depth: 18, 34, 50 or 101.
        shortcut: "conv" (V1c) or "avgpool" (vd) downsampling shortcut.
        in_channels: image channels.
        stem: "deep" (three 3x3 convs; V1c/vd) or "plain" (one 7x7 conv; torchvision).
    """

    def __init__(
        self,
        depth: int = 18,
        shortcut: str = "conv",
        in_channels: int = 3,
        stem: str = "deep",
    ) -> None:
        super().__init__()
        if depth not in _DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(_DEPTHS)}, got {depth}")
        if shortcut not in ("conv", "avgpool"):
            raise ValueError(f"shortcut must be 'conv' or 'avgpool', got {shortcut!r}")
        if stem not in ("deep", "plain"):
            raise ValueError(f"stem must be 'deep' or 'plain', got {stem!r}")
        block, counts = _DEPTHS[depth]
        self.in_channels = in_channels
        self.stem = _stem(in_channels, stem)
        in_ch = 64
        self.feat_channels: List[int] = []
        for idx, (count, width) in enumerate(zip(counts, (64, 128, 256, 512))):
            blocks = []
            for j in range(count):
                stride = 2 if (j == 0 and idx > 0) else 1
                blocks.append(block(in_ch, width, stride, shortcut))
                in_ch = width * block.expansion
            setattr(self, f"layer{idx + 1}", nn.Sequential(*blocks))
            self.feat_channels.append(in_ch)
        init_conv_bn(self)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        x = F.max_pool2d(self.stem(x), kernel_size=3, stride=2, padding=1)
        feats = []
        for idx in range(1, 5):
            x = getattr(self, f"layer{idx}")(x)
            feats.append(x)
        return feats


def _variant(depth: int, shortcut: str, kwargs: dict, stem: str = "deep") -> ResNet:
    return ResNet(depth=depth, shortcut=shortcut, stem=stem, **kwargs)


@register_backbone
def ResNet18(**kwargs) -> ResNet:  # noqa: N802
    """ResNet-18, 7x7 stem, strided-conv shortcut (torchvision's, mmsegmentation's ``ResNet``)."""
    return _variant(18, "conv", kwargs, stem="plain")


@register_backbone
def ResNet50(**kwargs) -> ResNet:  # noqa: N802
    """ResNet-50, 7x7 stem, strided-conv shortcut (torchvision's, mmsegmentation's ``ResNet``)."""
    return _variant(50, "conv", kwargs, stem="plain")


@register_backbone
def ResNet18V1c(**kwargs) -> ResNet:  # noqa: N802  (registry names are CamelCase)
    """ResNet-18, deep stem, strided-conv shortcut (mmsegmentation's resnet18_v1c)."""
    return _variant(18, "conv", kwargs)


@register_backbone
def ResNet50V1c(**kwargs) -> ResNet:  # noqa: N802
    """ResNet-50, deep stem, strided-conv shortcut (mmsegmentation's resnet50_v1c)."""
    return _variant(50, "conv", kwargs)


@register_backbone
def ResNet18D(**kwargs) -> ResNet:  # noqa: N802
    """ResNet-18-vd: deep stem, avg-pool shortcut (PaddleClas' ResNet18_vd)."""
    return _variant(18, "avgpool", kwargs)


@register_backbone
def ResNet50D(**kwargs) -> ResNet:  # noqa: N802
    """ResNet-50-vd: deep stem, avg-pool shortcut (PaddleClas' ResNet50_vd)."""
    return _variant(50, "avgpool", kwargs)


register_backbone(ResNet)

__all__: Sequence[str] = (
    "ResNet",
    "ResNet18",
    "ResNet50",
    "ResNet18V1c",
    "ResNet50V1c",
    "ResNet18D",
    "ResNet50D",
)
