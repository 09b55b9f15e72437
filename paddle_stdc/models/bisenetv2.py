"""BiSeNetV2: a wide-shallow detail branch and a narrow-deep semantic branch, fused by
bilateral guided aggregation (BGA), with four auxiliary heads used in training only.

Paper: Yu et al., "BiSeNet V2: Bilateral Network with Guided Aggregation for Real-time
Semantic Segmentation", IJCV 2021 (https://arxiv.org/abs/2004.02147). Reference code:
CoinCheung/BiSeNet and PaddleSeg 2.8 ``paddleseg/models/bisenet.py``; parameter names and
shapes equal PaddleSeg's ``BiSeNetV2`` (its released Cityscapes checkpoint loads), and its
``padding='same'`` convolutions are kept, since for stride 2 on even sizes they pad only the
bottom/right and the released weights were trained that way.

The PyTorch implementations (CoinCheung/BiSeNet, mmsegmentation, sssegmentation) differ in
details that change the numbers; each is a constructor option of :class:`BiSeNetV2` whose
default is PaddleSeg's behaviour (the converters in :mod:`paddle_stdc.convert.bisenetv2` set
them): symmetric padding of stride-2 convs, ReLU after the GE layers' stride-1 depthwise conv,
BN + ReLU after the context-embedding 3x3 conv, ReLU after the BGA conv, nearest upsampling in
the BGA, an average pool that counts its zero padding, the seg head's width and the auxiliary
heads' layout.

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
)
from paddle_stdc.registry import register_model, register_variant


def _pad(kernel: int, symmetric: bool) -> int | str:
    """PaddleSeg's ``'same'`` (stride 2 on an even size pads bottom/right only) or, with
    ``symmetric``, ``kernel // 2`` on every side (PyTorch's ``padding=1``)."""
    return kernel // 2 if symmetric else "same"


def _cbr(
    in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1, symmetric: bool = False
) -> ConvBNReLU:
    return ConvBNReLU(in_ch, out_ch, kernel, stride, padding=_pad(kernel, symmetric))


class DetailBranch(nn.Layer):
    """Three stages of plain 3x3 convs: (N, 3, H, W) -> (N, C3, H/8, W/8)."""

    def __init__(self, in_channels: int, channels: Sequence[int], symmetric: bool = False) -> None:
        super().__init__()
        c1, c2, c3 = channels

        def cbr(i: int, o: int, stride: int = 1) -> ConvBNReLU:
            return _cbr(i, o, stride=stride, symmetric=symmetric)

        self.convs = nn.Sequential(
            cbr(in_channels, c1, stride=2), cbr(c1, c1),
            cbr(c1, c2, stride=2), cbr(c2, c2), cbr(c2, c2),
            cbr(c2, c3, stride=2), cbr(c3, c3), cbr(c3, c3),
        )  # fmt: skip

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return self.convs(x)


class StemBlock(nn.Layer):
    """Stride-4 stem: a strided conv, then a conv path and a max-pool path concatenated."""

    def __init__(self, in_channels: int, out_channels: int, symmetric: bool = False) -> None:
        super().__init__()
        self.conv = _cbr(in_channels, out_channels, stride=2, symmetric=symmetric)
        self.left = nn.Sequential(
            _cbr(out_channels, out_channels // 2, 1),
            _cbr(out_channels // 2, out_channels, stride=2, symmetric=symmetric),
        )
        self.fuse = _cbr(out_channels * 2, out_channels, symmetric=symmetric)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv(x)
        pooled = F.max_pool2d(x, kernel_size=3, stride=2, padding=1)
        return self.fuse(paddle.concat([self.left(x), pooled], axis=1))


class GatherExpand(nn.Layer):
    """Gather-and-expansion, stride 1: 3x3 conv, depthwise expand x6, 1x1 project, residual.

    ``dw_relu``: ReLU after the depthwise conv (CoinCheung, mmseg, sssegmentation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand: int = 6,
        symmetric: bool = False,
        dw_relu: bool = False,
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        pad = _pad(3, symmetric)
        self.conv = nn.Sequential(
            _cbr(in_channels, in_channels, symmetric=symmetric),
            DepthwiseConvBN(in_channels, mid, 3, padding=pad, relu=dw_relu),
            ConvBN(mid, out_channels, 1, padding="same"),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.conv(x) + x)


class GatherExpandDown(nn.Layer):
    """Gather-and-expansion layer, stride 2, with a depthwise-separable shortcut.

    ``dw_relu``: ReLU after the stride-1 depthwise conv (CoinCheung, mmseg, sssegmentation).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        expand: int = 6,
        symmetric: bool = False,
        dw_relu: bool = False,
    ) -> None:
        super().__init__()
        mid = in_channels * expand
        pad = _pad(3, symmetric)
        self.branch_1 = nn.Sequential(
            _cbr(in_channels, in_channels, symmetric=symmetric),
            DepthwiseConvBN(in_channels, mid, 3, stride=2, padding=pad),
            DepthwiseConvBN(mid, mid, 3, padding=pad, relu=dw_relu),
            ConvBN(mid, out_channels, 1, padding="same"),
        )
        self.branch_2 = nn.Sequential(
            DepthwiseConvBN(in_channels, in_channels, 3, stride=2, padding=pad),
            ConvBN(in_channels, out_channels, 1, padding="same"),
        )

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        return F.relu(self.branch_1(x) + self.branch_2(x))


class ContextEmbedding(nn.Layer):
    """Global average pooling -> BN -> 1x1 conv, added back, then a 3x3 conv.

    ``conv_bn_relu``: the 3x3 conv is a ConvBNReLU (CoinCheung, mmseg, sssegmentation) instead
    of PaddleSeg's plain conv with bias (the paper's).
    """

    def __init__(self, in_channels: int, out_channels: int, conv_bn_relu: bool = False) -> None:
        super().__init__()
        self.bn = nn.BatchNorm2D(in_channels)
        self.conv_1x1 = _cbr(in_channels, out_channels, 1)
        if conv_bn_relu:
            self.conv_3x3 = _cbr(out_channels, out_channels)
        else:
            self.conv_3x3 = nn.Conv2D(out_channels, out_channels, 3, padding=1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        context = self.conv_1x1(self.bn(global_avg_pool(x)))
        return self.conv_3x3(context + x)


class SemanticBranch(nn.Layer):
    """Stem, three gather-and-expansion stages and context embedding.

    Returns the stride-4/8/16/32 features (for the auxiliary heads) and the embedded context.
    Options as in :class:`BiSeNetV2`.
    """

    def __init__(
        self,
        in_channels: int,
        channels: Sequence[int],
        symmetric: bool = False,
        ge_dw_relu: bool = False,
        ce_conv_bn_relu: bool = False,
    ) -> None:
        super().__init__()
        c1, c3, c4, c5 = channels
        opts = {"symmetric": symmetric, "dw_relu": ge_dw_relu}

        def stage(cin: int, cout: int, repeats: int) -> nn.Sequential:
            layers = [GatherExpandDown(cin, cout, **opts)]
            layers += [GatherExpand(cout, cout, **opts) for _ in range(repeats)]
            return nn.Sequential(*layers)

        self.stem = StemBlock(in_channels, c1, symmetric)
        self.stage3 = stage(c1, c3, 1)
        self.stage4 = stage(c3, c4, 1)
        self.stage5_4 = stage(c4, c5, 3)
        self.ce = ContextEmbedding(c5, c5, ce_conv_bn_relu)

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        s2 = self.stem(x)
        s3 = self.stage3(s2)
        s4 = self.stage4(s3)
        s5 = self.stage5_4(s4)
        return [s2, s3, s4, s5, self.ce(s5)]


class BGA(nn.Layer):
    """Bilateral guided aggregation of detail (N, C, H/8, W/8) and semantic (N, C, H/32, W/32)
    features -> (N, C, H/8, W/8).

    Args:
        channels: C.
        align_corners: of the bilinear resizing.
        symmetric: pad every side of the stride-2 conv (PyTorch ports).
        relu: ReLU after the final conv (CoinCheung, mmseg, sssegmentation).
        upsample: ``"bilinear"`` (PaddleSeg, mmseg, sssegmentation) or ``"nearest"``
            (CoinCheung's ``nn.Upsample(scale_factor=4)``).
        pool_counts_padding: the 3x3 average pool divides by 9 also at the border, counting
            its zero padding (PyTorch's ``AvgPool2d`` default) instead of PaddleSeg's exclusive
            pool.
    """

    def __init__(
        self,
        channels: int,
        align_corners: bool,
        symmetric: bool = False,
        relu: bool = False,
        upsample: str = "bilinear",
        pool_counts_padding: bool = False,
    ) -> None:
        super().__init__()
        if upsample not in ("bilinear", "nearest"):
            raise ValueError(f"BGA upsample must be 'bilinear' or 'nearest', not {upsample!r}")
        self.align_corners = align_corners
        self.upsample = upsample
        pad = _pad(3, symmetric)
        self.db_branch_keep = nn.Sequential(
            DepthwiseConvBN(channels, channels, 3, padding=pad), nn.Conv2D(channels, channels, 1)
        )
        self.db_branch_down = nn.Sequential(
            ConvBN(channels, channels, 3, stride=2, padding=pad),
            nn.AvgPool2D(kernel_size=3, stride=2, padding=1, exclusive=not pool_counts_padding),
        )
        self.sb_branch_keep = nn.Sequential(
            DepthwiseConvBN(channels, channels, 3, padding=pad),
            nn.Conv2D(channels, channels, 1),
            nn.Sigmoid(),
        )
        self.sb_branch_up = ConvBN(channels, channels, 3, padding=pad)
        self.conv = (ConvBNReLU if relu else ConvBN)(channels, channels, 3, padding=pad)

    def _resize(self, x: paddle.Tensor, like: paddle.Tensor) -> paddle.Tensor:
        if self.upsample == "nearest":
            return F.interpolate(x, like.shape[2:], mode="nearest")
        return F.interpolate(x, like.shape[2:], mode="bilinear", align_corners=self.align_corners)

    def forward(self, detail: paddle.Tensor, semantic: paddle.Tensor) -> paddle.Tensor:
        detail_keep = self.db_branch_keep(detail)
        semantic_gate = F.sigmoid(self._resize(self.sb_branch_up(semantic), detail_keep))
        low = self.db_branch_down(detail) * self.sb_branch_keep(semantic)
        return self.conv(detail_keep * semantic_gate + self._resize(low, detail_keep))


class BiSeNetV2Head(nn.Layer):
    """3x3 ConvBNReLU + dropout 0.1, then a 1x1 classifier (PaddleSeg's BiSeNetV2 head):
    (N, C_in, H, W) -> (N, K, H, W), or (N, K, sH, sW) with ``upsample`` s.

    ``widths``: output channels of the 3x3 ConvBNReLUs, one (PaddleSeg; ``conv_3x3``) or two
    (mmseg's / sssegmentation's FCN heads with two convs, CoinCheung's auxiliary heads; the
    second is ``conv_extra``). ``upsample``: nearest upsampling factor before the second conv
    (CoinCheung's auxiliary heads: 2).
    """

    def __init__(
        self, in_channels: int, widths: Sequence[int], num_classes: int, upsample: int = 1
    ) -> None:
        super().__init__()
        if len(widths) not in (1, 2):
            raise ValueError(f"a BiSeNetV2 head has one or two 3x3 convs, not {len(widths)}")
        self.upsample = upsample
        self.conv_3x3 = nn.Sequential(_cbr(in_channels, widths[0]), nn.Dropout(0.1))
        self.conv_extra = _cbr(widths[0], widths[1]) if len(widths) == 2 else None
        self.conv_1x1 = nn.Conv2D(widths[-1], num_classes, 1)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        x = self.conv_3x3(x)
        if self.conv_extra is not None:
            if self.upsample > 1:
                x = F.interpolate(x, scale_factor=self.upsample, mode="nearest")
            x = self.conv_extra(x)
        return self.conv_1x1(x)


class BiSeNetV2(nn.Layer):
    """BiSeNetV2 (PaddleSeg-compatible parameters; every option defaults to PaddleSeg).

    Args:
        num_classes: number of classes K.
        lambd: width factor of the semantic branch's first stages (paper: 1/4).
        align_corners: bilinear resizing mode (PaddleSeg: False).
        in_channels: image channels.
        symmetric_padding: stride-2 convs pad every side by 1 (PyTorch ports) instead of
            PaddleSeg's ``'same'`` (bottom/right only on even sizes).
        ge_dw_relu: ReLU after the stride-1 depthwise conv of every GE layer.
        ce_conv_bn_relu: the context embedding's 3x3 conv is followed by BN + ReLU.
        bga_relu: ReLU after the BGA's final conv + BN.
        bga_upsample: ``"bilinear"`` or ``"nearest"`` resizing inside the BGA.
        bga_pool_counts_padding: the BGA's average pool counts its zero padding (PyTorch).
        head_channels: width of the seg head's 3x3 conv (PaddleSeg 128; others 1024).
        aux_channels: per auxiliary head (strides 4, 8, 16, 32), the widths of its one or two
            3x3 convs; default one conv as wide as its input (PaddleSeg).
        aux_upsample: nearest upsampling between an auxiliary head's two convs (CoinCheung 2).
    """

    train_output_names = ("seg", "aux4", "aux8", "aux16", "aux32")

    def __init__(
        self,
        num_classes: int,
        lambd: float = 0.25,
        align_corners: bool = False,
        in_channels: int = 3,
        symmetric_padding: bool = False,
        ge_dw_relu: bool = False,
        ce_conv_bn_relu: bool = False,
        bga_relu: bool = False,
        bga_upsample: str = "bilinear",
        bga_pool_counts_padding: bool = False,
        head_channels: int = 128,
        aux_channels: Optional[Sequence[Sequence[int]]] = None,
        aux_upsample: int = 1,
    ) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.align_corners = align_corners
        c1, c3 = int(64 * lambd), int(128 * lambd)
        sb_channels = (c1, c3, 64, 128)
        self.db = DetailBranch(in_channels, (64, 64, 128), symmetric_padding)
        self.sb = SemanticBranch(
            in_channels, sb_channels, symmetric_padding, ge_dw_relu, ce_conv_bn_relu
        )
        self.bga = BGA(
            128, align_corners, symmetric_padding, bga_relu, bga_upsample, bga_pool_counts_padding
        )
        aux_channels = aux_channels or [(c,) for c in sb_channels]
        if len(aux_channels) != 4:
            raise ValueError(f"aux_channels needs 4 entries (strides 4..32), got {aux_channels}")
        for i, (cin, widths) in enumerate(zip(sb_channels, aux_channels), start=1):
            head = BiSeNetV2Head(cin, tuple(widths), num_classes, aux_upsample)
            setattr(self, f"aux_head{i}", head)
        self.head = BiSeNetV2Head(128, (head_channels,), num_classes)
        init_conv_bn(self)

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


@register_variant(classifier="head.conv_1x1.weight")
def bisenetv2(num_classes: int = 19, **kwargs) -> BiSeNetV2:
    """BiSeNetV2 (options: see :class:`BiSeNetV2`)."""
    return BiSeNetV2(num_classes, **kwargs)
