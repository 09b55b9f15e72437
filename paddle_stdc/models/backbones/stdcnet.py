"""STDCNet backbones (STDC1 = STDCNet813, STDC2 = STDCNet1446).

Paper: Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021
(https://arxiv.org/abs/2104.13188). Reference code: MichaelFan01/STDC-Seg and PaddleSeg 2.8
``paddleseg/models/backbones/stdcnet.py``. Parameter names equal PaddleSeg's
(``features.N.conv_list.M.{conv,bn}``, ``features.N.avd_layer.{0,1}``) so PaddleSeg's ImageNet
weights (``STDCNet1.tar.gz``/``STDCNet2.tar.gz``) load unchanged.

Blocks -> model class -> registered variants.
"""

from __future__ import annotations

from typing import List, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_stdc.models.layers import init_conv_bn
from paddle_stdc.registry import register_backbone


class AvgPool3x3S2(nn.Layer):
    """3x3/2 average pooling with padding 1 of (N, C, H, W) ``x`` >= 0 (a ReLU output).

    ``count_pad=False`` (PaddleSeg) divides by the real cells only (``exclusive=True``);
    ``count_pad=True`` always divides by 9, counting the zero padding, as PyTorch's
    ``AvgPool2d(3, 2, 1)`` does by default (official STDC-Seg, mmsegmentation): the edge rows
    and columns differ, and the global context spreads that to every pixel.

    Written as a depthwise box-filter conv (divided by the per-position count of real cells):
    the same values as ``F.avg_pool2d``, but a conv in Paddle Inference, whose CPU pool2d
    kernel took ~24 ms per call on STDC-Seg at 512x1024.
    :func:`paddle_stdc.export.prepare_for_export` swaps in a form that fuses into oneDNN.
    """

    def __init__(self, count_pad: bool = False) -> None:
        super().__init__()
        self.count_pad = count_pad

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        channels = x.shape[1]
        if self.count_pad:
            box = paddle.full([channels, 1, 3, 3], 1.0 / 9.0, dtype=x.dtype)
            return F.conv2d(x, box, stride=2, padding=1, groups=channels)
        total = F.conv2d(x, paddle.ones([channels, 1, 3, 3], dtype=x.dtype), stride=2, padding=1,
                         groups=channels)  # fmt: skip
        ones = paddle.ones_like(x[:, :1])
        count = F.conv2d(ones, paddle.ones([1, 1, 3, 3], dtype=x.dtype), stride=2, padding=1)
        return total / count


class ConvX(nn.Layer):
    """STDCNet's ConvX: bias-free conv -> BN -> ReLU, with PaddleSeg's names (``conv``, ``bn``)."""

    def __init__(
        self, in_channels: int, out_channels: int, kernel: int = 3, stride: int = 1, lr: float = 1.0
    ) -> None:
        super().__init__()
        attr = paddle.ParamAttr(learning_rate=lr)
        self.conv = nn.Conv2D(
            in_channels,
            out_channels,
            kernel,
            stride=stride,
            padding=kernel // 2,
            weight_attr=attr,
            bias_attr=False,
        )
        self.bn = nn.BatchNorm2D(out_channels, weight_attr=attr, bias_attr=attr)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.bn(self.conv(x)))


class CatBottleneck(nn.Layer):
    """STDC module: a chain of convs with halving widths whose outputs are concatenated.

    With ``block_num`` = 4 and ``out_channels`` = C the branch widths are C/2, C/4, C/8, C/8.
    A stride-2 module downsamples the first branch with a depthwise 3x3 conv (``avd_layer``)
    before the chain and with 3x3 average pooling on the skip to the concat (``pool_count_pad``:
    see :class:`AvgPool3x3S2`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        block_num: int = 4,
        stride: int = 1,
        lr: float = 1.0,
        pool_count_pad: bool = False,
    ) -> None:
        super().__init__()
        if block_num < 2:
            raise ValueError(f"block_num must be >= 2, got {block_num}")
        self.stride = stride
        half = out_channels // 2
        if stride == 2:
            attr = paddle.ParamAttr(learning_rate=lr)
            self.avd_layer = nn.Sequential(
                nn.Conv2D(
                    half,
                    half,
                    3,
                    stride=2,
                    padding=1,
                    groups=half,
                    weight_attr=attr,
                    bias_attr=False,
                ),
                nn.BatchNorm2D(half, weight_attr=attr, bias_attr=attr),
            )
            self.skip_pool = AvgPool3x3S2(pool_count_pad)
        self.conv_list = nn.LayerList([ConvX(in_channels, half, kernel=1, lr=lr)])
        for k in range(1, block_num):
            width_in = out_channels // 2**k
            width_out = out_channels // 2 ** (k + 1) if k < block_num - 1 else width_in
            self.conv_list.append(ConvX(width_in, width_out, lr=lr))

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        first = self.conv_list[0](x)
        out = self.avd_layer(first) if self.stride == 2 else first
        branches = []
        for conv in self.conv_list[1:]:
            out = conv(out)
            branches.append(out)
        if self.stride == 2:
            first = self.skip_pool(first)
        return paddle.concat([first, *branches], axis=1)


class STDCNet(nn.Layer):
    """STDCNet feature extractor: (N, C_in, H, W) -> features at strides 2, 4, 8, 16, 32.

    Output channels are ``feat_channels`` = [base/2, base, 4 base, 8 base, 16 base].

    Args:
        base: width of the stride-4 stem.
        layers: number of STDC modules in stages 3, 4, 5 ([2, 2, 2] STDC1, [4, 5, 3] STDC2).
        block_num: branches per STDC module.
        relative_lr: learning-rate multiplier of every backbone parameter.
        in_channels: image channels.
        pool_count_pad: the stride-2 modules' average pooling counts the zero padding (official
            STDC-Seg and mmsegmentation weights need True; PaddleSeg's False).
    """

    def __init__(
        self,
        base: int = 64,
        layers: Sequence[int] = (4, 5, 3),
        block_num: int = 4,
        relative_lr: float = 1.0,
        in_channels: int = 3,
        pool_count_pad: bool = False,
    ) -> None:
        super().__init__()
        self.layers = list(layers)
        self.feat_channels = [base // 2, base, base * 4, base * 8, base * 16]
        lr = relative_lr
        blocks: List[nn.Layer] = [
            ConvX(in_channels, base // 2, 3, 2, lr),
            ConvX(base // 2, base, 3, 2, lr),
        ]
        width = base
        for stage, depth in enumerate(self.layers):
            out_width = base * 2 ** (stage + 2)
            for j in range(depth):
                stride = 2 if j == 0 else 1
                blocks.append(
                    CatBottleneck(width, out_width, block_num, stride, lr, pool_count_pad)
                )
                width = out_width
        self.features = nn.Sequential(*blocks)
        self._stage_ends = [2 + sum(self.layers[: i + 1]) for i in range(len(self.layers))]
        init_conv_bn(self)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        feats = []
        x = self.features[0](x)
        feats.append(x)
        x = self.features[1](x)
        feats.append(x)
        start = 2
        for end in self._stage_ends:
            for idx in range(start, end):
                x = self.features[idx](x)
            feats.append(x)
            start = end
        return feats


@register_backbone
def STDC1(**kwargs) -> STDCNet:  # noqa: N802  (PaddleSeg's registry name)
    """STDCNet813: stages of [2, 2, 2] STDC modules."""
    return STDCNet(base=64, layers=(2, 2, 2), **kwargs)


@register_backbone
def STDC2(**kwargs) -> STDCNet:  # noqa: N802
    """STDCNet1446: stages of [4, 5, 3] STDC modules."""
    return STDCNet(base=64, layers=(4, 5, 3), **kwargs)
