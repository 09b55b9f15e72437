"""BiSeNetV1: a three-conv spatial path and a ResNet context path (output stride 32) with
attention refinement, fused by a feature fusion module; two auxiliary heads in training.

Paper: Yu et al., "BiSeNet: Bilateral Segmentation Network for Real-time Semantic
Segmentation", ECCV 2018 (https://arxiv.org/abs/1808.00897). Reference code:
mmsegmentation ``BiSeNetV1`` (``bisenetv1_r18-d32``/``r50-d32`` configs, whose widths this
module uses) and CoinCheung/BiSeNet. Not PaddleSeg's ``BiseNetV1``, which runs its backbone
at output stride 8 (about 113 GMACs at 512x1024 for R-18 against about a quarter of that here).

Training outputs: ``seg`` (fused, stride 8) and ``aux8``/``aux16`` (the refined context
features), all at the input size. Eval returns ``[logit]``.

Blocks -> model class -> registered variants.
"""

from __future__ import annotations

import functools
from typing import Dict, List, Tuple

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_stdc.models.backbones.resnet import ResNet
from paddle_stdc.models.layers import (
    AttentionRefinementModule,
    ConvBN,
    ConvBNReLU,
    FeatureFusionModule,
    SegHead,
    global_avg_pool,
)
from paddle_stdc.registry import register_model, register_variant

#: Widths by backbone family (mmsegmentation's configs): spatial path channels, context
#: channels after the ARMs, fusion/decoder channels, auxiliary head channels.
_WIDTHS: Dict[str, Tuple[Tuple[int, int, int, int], int, int, int]] = {
    "basic": ((64, 64, 64, 128), 128, 256, 64),
    "bottleneck": ((256, 256, 256, 512), 512, 1024, 256),
}


class SpatialPath(nn.Layer):
    """7x7/2, 3x3/2, 3x3/2 convs and a 1x1 projection: (N, 3, H, W) -> (N, C, H/8, W/8)."""

    def __init__(self, in_channels: int, channels: Tuple[int, int, int, int]) -> None:
        super().__init__()
        c1, c2, c3, c4 = channels
        self.layers = nn.Sequential(
            ConvBNReLU(in_channels, c1, 7, stride=2, bias=False),
            ConvBNReLU(c1, c2, 3, stride=2, bias=False),
            ConvBNReLU(c2, c3, 3, stride=2, bias=False),
            ConvBNReLU(c3, c4, 1, bias=False),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.layers(x)


class ContextPath(nn.Layer):
    """ResNet + ARMs on the stride-16/32 features + global context, upsampled by nearest.

    Returns the refined context at stride 8 and at stride 16 (``channels`` each).
    """

    def __init__(self, backbone: ResNet, channels: int) -> None:
        super().__init__()
        self.backbone = backbone
        c16, c32 = backbone.feat_channels[2], backbone.feat_channels[3]
        self.arm16 = AttentionRefinementModule(c16, channels)
        self.arm32 = AttentionRefinementModule(c32, channels)
        self.conv_head32 = ConvBNReLU(channels, channels, 3, bias=False)
        self.conv_head16 = ConvBNReLU(channels, channels, 3, bias=False)
        self.conv_avg = ConvBNReLU(c32, channels, 1, bias=False)

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, paddle.Tensor]:
        _, feat8, feat16, feat32 = self.backbone(x)
        context = self.conv_avg(global_avg_pool(feat32))
        up32 = F.interpolate(self.arm32(feat32) + context, feat16.shape[2:], mode="nearest")
        up32 = self.conv_head32(up32)
        up16 = F.interpolate(self.arm16(feat16) + up32, feat8.shape[2:], mode="nearest")
        return self.conv_head16(up16), up32


class ConvBNAttentionFFM(nn.Layer):
    """FFM whose channel attention is one 1x1 conv + BN (+ ReLU), then a sigmoid.

    With ``relu`` the layout and function of mmsegmentation's BiSeNetV1 (``ffm.conv_atten``),
    without it CoinCheung/BiSeNet's (``ffm.conv``, ``ffm.bn``), so their checkpoints convert
    exactly; the default :class:`FeatureFusionModule` squeezes through two 1x1 convs.
    (N, C_sp, H, W), (N, C_cp, H, W) -> (N, C_out, H, W).
    """

    def __init__(self, in_channels: int, out_channels: int, relu: bool = True) -> None:
        super().__init__()
        self.convblk = ConvBNReLU(in_channels, out_channels, 1)
        atten = ConvBNReLU if relu else ConvBN
        self.conv_atten = atten(out_channels, out_channels, 1, bias=False)

    def forward(self, fsp: paddle.Tensor, fcp: paddle.Tensor) -> paddle.Tensor:
        feat = self.convblk(paddle.concat([fsp, fcp], axis=1))
        atten = F.sigmoid(self.conv_atten(global_avg_pool(feat)))
        return feat * atten + feat


_FFMS = {
    "squeeze": FeatureFusionModule,
    "conv_bn": ConvBNAttentionFFM,
    "conv_bn_no_relu": functools.partial(ConvBNAttentionFFM, relu=False),
}


class BiSeNetV1(nn.Layer):
    """BiSeNetV1 with an output-stride-32 ResNet context path.

    Args:
        num_classes: number of classes K.
        backbone: a :class:`ResNet` (e.g. ``ResNet18V1c``); its block type picks the widths.
        align_corners: bilinear upsampling mode of the logits (mmsegmentation: False).
        ffm: channel attention of the feature fusion module: ``"squeeze"`` (two 1x1 convs with a
            4x bottleneck, as STDC-Seg), ``"conv_bn"`` (one 1x1 conv + BN + ReLU, as
            mmsegmentation's BiSeNetV1, whose checkpoints need it) or ``"conv_bn_no_relu"``
            (one 1x1 conv + BN, as CoinCheung/BiSeNet's).
    """

    train_output_names = ("seg", "aux8", "aux16")

    def __init__(
        self,
        num_classes: int,
        backbone: ResNet,
        align_corners: bool = False,
        ffm: str = "squeeze",
    ) -> None:
        super().__init__()
        if ffm not in _FFMS:
            raise ValueError(f"ffm must be one of {sorted(_FFMS)}, got {ffm!r}")
        if not isinstance(backbone, ResNet):
            raise TypeError(f"BiSeNetV1 needs a ResNet backbone, got {type(backbone).__name__}")
        family = "basic" if backbone.feat_channels[-1] == 512 else "bottleneck"
        spatial, context, fused, aux = _WIDTHS[family]
        self.num_classes = num_classes
        self.align_corners = align_corners
        self.sp = SpatialPath(backbone.in_channels, spatial)
        self.cp = ContextPath(backbone, context)
        self.ffm = _FFMS[ffm](spatial[-1] + context, fused)
        self.head = SegHead(fused, fused, num_classes)
        self.aux_head8 = SegHead(context, aux, num_classes)
        self.aux_head16 = SegHead(context, aux, num_classes)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        size = x.shape[2:]
        cp8, cp16 = self.cp(x)
        logits = [self.head(self.ffm(self.sp(x), cp8))]
        if self.training:
            logits += [self.aux_head8(cp8), self.aux_head16(cp16)]
        return [
            F.interpolate(logit, size, mode="bilinear", align_corners=self.align_corners)
            for logit in logits
        ]


register_model(BiSeNetV1)


def _bisenetv1(depth: int, num_classes: int, shortcut: str, stem: str, kwargs) -> BiSeNetV1:
    backbone = ResNet(depth=depth, shortcut=shortcut, stem=stem)
    return BiSeNetV1(num_classes, backbone, **kwargs)


@register_variant(classifier="head.conv_out.weight", backbone_attr="cp.backbone")
def bisenetv1_r18(
    num_classes: int = 19, shortcut: str = "conv", stem: str = "deep", **kwargs
) -> BiSeNetV1:
    """BiSeNetV1 R-18-D32 (``shortcut='avgpool'`` for ResNet-vd ImageNet weights;
    ``stem='plain'``, the 7x7 stem, for mmsegmentation's and CoinCheung's checkpoints)."""
    return _bisenetv1(18, num_classes, shortcut, stem, kwargs)


@register_variant(classifier="head.conv_out.weight", backbone_attr="cp.backbone")
def bisenetv1_r50(
    num_classes: int = 19, shortcut: str = "conv", stem: str = "deep", **kwargs
) -> BiSeNetV1:
    """BiSeNetV1 R-50-D32 (``shortcut='avgpool'`` for ResNet-vd ImageNet weights;
    ``stem='plain'``, the 7x7 stem, for mmsegmentation's checkpoints)."""
    return _bisenetv1(50, num_classes, shortcut, stem, kwargs)
