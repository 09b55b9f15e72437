"""BiSeNetV2: a wide-shallow detail branch and a narrow-deep semantic branch, fused by
bilateral guided aggregation (BGA), with four auxiliary heads used in training only.

Paper: Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time
Semantic Segmentation", IJCV 2021 (https://arxiv.org/abs/2004.02147). Reference code:
CoinCheung/BiSeNet and PaddleSeg 2.8 ``paddleseg/models/bisenet.py``; parameter names and
shapes equal PaddleSeg's ``BiSeNetV2`` (its released Cityscapes checkpoint loads), and its
``padding='same'`` convolutions are kept, since for stride 2 on even sizes they pad only the
bottom/right and the released weights were trained that way.

Training outputs: ``seg`` and ``aux4/aux8/aux16/aux32`` (heads on the semantic branch's
stride-4/8/16/32 features), all at the input size. Eval returns ``[logit]``.

Blocks -> model class -> registered variants.
"""

from __future__ import annotations

from typing import List, Optional, Sequence

import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddle_stdc.models.layers import (
    ConvBN,
    ConvBNReLU,
    DepthwiseConvBN,
    global_avg_pool,
    init_conv_bn,
    load_if_given,
)
from paddle_stdc.registry import register_model, register_variant


def _cbr(in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1) -> ConvBNReLU:
    return ConvBNReLU(in_ch, out_ch, kernel, stride, padding="same")


class DetailBranch(nn.Layer):
    """Three stages of plain 3x3 convs: (N, 3, H, W) -> (N, C3, H/8, W/8)."""

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c1, c2, c3 = channels
        self.convs = nn.Sequential(
            _cbr(in_channels, c1, stride=2), _cbr(c1, c1),
            _cbr(c1, c2, stride=2), _cbr(c2, c2), _cbr(c2, c2),
            _cbr(c2, c3, stride=2), _cbr(c3, c3), _cbr(c3, c3),
        )  # fmt: skip

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.convs(x)


class StemBlock(nn.Layer):
    """Stride-4 stem: a strided conv, then a conv path and a max-pool path concatenated."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv = _cbr(in_channels, out_channels, stride=2)
        self.left = nn.Sequential(
            _cbr(out_channels, out_channels // 2, 1),
            _cbr(out_channels // 2, out_channels, stride=2),
        )
        self.fuse = _cbr(out_channels * 2, out_channels)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv(x)
        pooled = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return self.fuse(paddle.concat([self.left(x), pooled], axis=1))


class GatherExpand(nn.Layer):
    """Gather-and-expansion, stride 1: 3x3 conv, depthwise expand x6, 1x1 project, residual."""

    def __init__(self, in_channels: int, out_channels: int, expand: int = 6) -> None:
        super().__init__()
        mid = in_channels * expand
        self.conv = nn.Sequential(
            _cbr(in_channels, in_channels),
            DepthwiseConvBN(in_channels, mid, 3),
            ConvBN(mid, out_channels, 1, padding="same"),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.conv(x) + x)


class GatherExpandDown(nn.Layer):
    """Gather-and-expansion layer, stride 2, with a depthwise-separable shortcut."""

    def __init__(self, in_channels: int, out_channels: int, expand: int = 6) -> None:
        super().__init__()
        mid = in_channels * expand
        self.branch_1 = nn.Sequential(
            _cbr(in_channels, in_channels),
            DepthwiseConvBN(in_channels, mid, 3, stride=2),
            DepthwiseConvBN(mid, mid, 3),
            ConvBN(mid, out_channels, 1, padding="same"),
        )
        self.branch_2 = nn.Sequential(
            DepthwiseConvBN(in_channels, in_channels, 3, stride=2),
            ConvBN(in_channels, out_channels, 1, padding="same"),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.branch_1(x) + self.branch_2(x))


class ContextEmbedding(nn.Layer):
    """Global average pooling -> BN -> 1x1 conv, added back, then a 3x3 conv."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2D(in_channels)
        self.conv_1x1 = _cbr(in_channels, out_channels, 1)
        self.conv_3x3 = nn.Conv2D(out_channels, out_channels, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        context = self.conv_1x1(self.bn(global_avg_pool(x)))
        return self.conv_3x3(context + x)


class SemanticBranch(nn.Layer):
    """Stem, three gather-and-expansion stages and context embedding.

    Returns the stride-4/8/16/32 features (for the auxiliary heads) and the embedded context.
    """

    def __init__(self, in_channels: int, channels: Sequence[int]) -> None:
        super().__init__()
        c1, c3, c4, c5 = channels
        self.stem = StemBlock(in_channels, c1)
        self.stage3 = nn.Sequential(GatherExpandDown(c1, c3), GatherExpand(c3, c3))
        self.stage4 = nn.Sequential(GatherExpandDown(c3, c4), GatherExpand(c4, c4))
        self.stage5_4 = nn.Sequential(
            GatherExpandDown(c4, c5), GatherExpand(c5, c5), GatherExpand(c5, c5),
            GatherExpand(c5, c5),
        )  # fmt: skip
        self.ce = ContextEmbedding(c5, c5)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        s2 = self.stem(x)
        s3 = self.stage3(s2)
        s4 = self.stage4(s3)
        s5 = self.stage5_4(s4)
        return [s2, s3, s4, s5, self.ce(s5)]


class BGA(nn.Layer):
    """Bilateral guided aggregation of detail (H/8) and semantic (H/32) features."""

    def __init__(self, channels: int, align_corners: bool) -> None:
        super().__init__()
        self.align_corners = align_corners
        self.db_branch_keep = nn.Sequential(
            DepthwiseConvBN(channels, channels, 3), nn.Conv2D(channels, channels, 1)
        )
        self.db_branch_down = nn.Sequential(
            ConvBN(channels, channels, 3, stride=2, padding="same"),
            nn.AvgPool2D(kernel_size=3, stride=2, padding=1),
        )
        self.sb_branch_keep = nn.Sequential(
            DepthwiseConvBN(channels, channels, 3), nn.Conv2D(channels, channels, 1), nn.Sigmoid()
        )
        self.sb_branch_up = ConvBN(channels, channels, 3, padding="same")
        self.conv = ConvBN(channels, channels, 3, padding="same")

    def _resize(self, x: paddle.Tensor, like: paddle.Tensor) -> paddle.Tensor:
        return F.interpolate(x, like.shape[2:], mode="bilinear", align_corners=self.align_corners)

    def forward(self, detail: paddle.Tensor, semantic: paddle.Tensor) -> paddle.Tensor:
        detail_keep = self.db_branch_keep(detail)
        semantic_gate = F.sigmoid(self._resize(self.sb_branch_up(semantic), detail_keep))
        low = self.db_branch_down(detail) * self.sb_branch_keep(semantic)
        return self.conv(detail_keep * semantic_gate + self._resize(low, detail_keep))


class SegHead(nn.Layer):
    """3x3 ConvBNReLU + dropout 0.1, then a 1x1 classifier (PaddleSeg's BiSeNetV2 head)."""

    def __init__(self, in_channels: int, mid_channels: int, num_classes: int) -> None:
        super().__init__()
        self.conv_3x3 = nn.Sequential(_cbr(in_channels, mid_channels), nn.Dropout(0.1))
        self.conv_1x1 = nn.Conv2D(mid_channels, num_classes, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.conv_1x1(self.conv_3x3(x))


class BiSeNetV2(nn.Layer):
    """BiSeNetV2 (PaddleSeg-compatible parameters).

    Args:
        num_classes: number of classes K.
        lambd: width factor of the semantic branch's first stages (paper: 1/4).
        align_corners: bilinear resizing mode (PaddleSeg: False).
        in_channels: image channels.
        pretrained: path or URL of whole-model weights, or None.
    """

    train_output_names = ("seg", "aux4", "aux8", "aux16", "aux32")

    def __init__(
        self,
        num_classes: int,
        lambd: float = 0.25,
        align_corners: bool = False,
        in_channels: int = 3,
        pretrained: Optional[str] = None,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners
        db_channels = (64, 64, 128)
        c1, c3 = int(64 * lambd), int(128 * lambd)
        sb_channels = (c1, c3, 64, 128)
        self.db = DetailBranch(in_channels, db_channels)
        self.sb = SemanticBranch(in_channels, sb_channels)
        self.bga = BGA(128, align_corners)
        self.aux_head1 = SegHead(c1, c1, num_classes)
        self.aux_head2 = SegHead(c3, c3, num_classes)
        self.aux_head3 = SegHead(64, 64, num_classes)
        self.aux_head4 = SegHead(128, 128, num_classes)
        self.head = SegHead(128, 128, num_classes)
        init_conv_bn(self)
        load_if_given(self, pretrained)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        size = x.shape[2:]
        feat4, feat8, feat16, feat32, context = self.sb(x)
        logits = [self.head(self.bga(self.db(x), context))]
        if self.training:
            heads = (self.aux_head1, self.aux_head2, self.aux_head3, self.aux_head4)
            logits += [head(f) for head, f in zip(heads, (feat4, feat8, feat16, feat32))]
        return [
            F.interpolate(logit, size, mode="bilinear", align_corners=self.align_corners)
            for logit in logits
        ]


register_model(BiSeNetV2)


@register_variant
def bisenetv2(
    num_classes: int = 19,
    pretrained: Optional[str] = None,
    backbone_pretrained: Optional[str] = None,
    **kwargs,
) -> BiSeNetV2:
    """BiSeNetV2 (no separate backbone; ``backbone_pretrained`` must be None)."""
    if backbone_pretrained:
        raise ValueError("BiSeNetV2 has no separate backbone; use `pretrained` for its weights")
    return BiSeNetV2(num_classes, pretrained=pretrained, **kwargs)
