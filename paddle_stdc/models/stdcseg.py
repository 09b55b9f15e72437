"""STDC-Seg: STDCNet context path + attention refinement, feature fusion and a detail head.

Paper: Fan et al., "Rethinking BiSeNet For Real-time Semantic Segmentation", CVPR 2021
(https://arxiv.org/abs/2104.13188). Reference code: MichaelFan01/STDC-Seg and PaddleSeg 2.8
``paddleseg/models/stdcseg.py``; parameter names and shapes equal PaddleSeg's ``STDCSeg`` so
its released checkpoints load with no missing or unexpected keys.

Training outputs (names in ``train_output_names``): the fused logit and two auxiliary logits
(from the stride-8 and stride-16 context features), all upsampled to the input size, then one
detail (boundary) logit per enabled ``use_boundary_*`` flag at its own resolution, for
``DetailAggregateLoss``. Eval returns ``[logit]`` of shape (N, num_classes, H, W).

Blocks -> model class -> registered variants.
"""

from __future__ import annotations

from typing import List, Tuple

import paddle
import paddle.nn as nn

from paddle_stdc.models.backbones.stdcnet import STDC1, STDC2, STDCNet
from paddle_stdc.models.layers import (
    AttentionRefinementModule,
    ConvBNReLU,
    FeatureFusionModule,
    NonNeg,
    SegHead,
    global_avg_pool,
    resize_to,
)
from paddle_stdc.registry import register_model, register_variant


class ContextPath(nn.Layer):
    """Backbone + ARMs on the stride-16/32 features + global context.

    Returns the backbone features at strides 2, 4, 8, 16 and the refined context features
    at stride 8 and 16 (128 channels each).
    """

    def __init__(self, backbone: STDCNet) -> None:
        super().__init__()
        self.backbone = backbone
        c16, c32 = backbone.feat_channels[3], backbone.feat_channels[4]
        self.arm16 = AttentionRefinementModule(c16, 128)
        self.arm32 = AttentionRefinementModule(c32, 128)
        self.conv_head32 = ConvBNReLU(128, 128, 3)
        self.conv_head16 = ConvBNReLU(128, 128, 3)
        self.conv_avg = ConvBNReLU(c32, 128, 1)
        self.sum32 = NonNeg()  # sums of ReLU outputs
        self.sum16 = NonNeg()

    def forward(self, x: paddle.Tensor) -> Tuple[paddle.Tensor, ...]:
        feat2, feat4, feat8, feat16, feat32 = self.backbone(x)
        context = self.conv_avg(global_avg_pool(feat32))
        # broadcasting the 1x1 context == its nearest upsampling
        feat32_sum = self.sum32(self.arm32(feat32) + context)
        feat32_up = self.conv_head32(resize_to(feat32_sum, feat16.shape[2:], "nearest"))
        feat16_sum = self.sum16(self.arm16(feat16) + feat32_up)
        feat16_up = self.conv_head16(resize_to(feat16_sum, feat8.shape[2:], "nearest"))
        return feat2, feat4, feat8, feat16, feat16_up, feat32_up


class STDCSeg(nn.Layer):
    """STDC-Seg network (PaddleSeg-compatible parameters).

    Args:
        num_classes: number of classes K.
        backbone: an :class:`STDCNet` (STDC1 or STDC2).
        use_boundary_2/4/8/16: emit a detail logit from the stride-2/4/8/16 backbone feature
            in training (the paper and PaddleSeg's recipes use stride 8 only). Heads of
            disabled strides are kept (PaddleSeg checkpoints contain them) but frozen.
    """

    def __init__(
        self,
        num_classes: int,
        backbone: STDCNet,
        use_boundary_2: bool = False,
        use_boundary_4: bool = False,
        use_boundary_8: bool = True,
        use_boundary_16: bool = False,
    ) -> None:
        super().__init__()
        if not isinstance(backbone, STDCNet):
            raise TypeError(f"STDCSeg needs an STDCNet backbone, got {type(backbone).__name__}")
        ch = backbone.feat_channels
        self.num_classes = num_classes
        self.cp = ContextPath(backbone)
        self.ffm = FeatureFusionModule(ch[2] + 128, 256)
        self.conv_out = SegHead(256, 256, num_classes)
        self.conv_out8 = SegHead(128, 64, num_classes)
        self.conv_out16 = SegHead(128, 64, num_classes)
        self.conv_out_sp16 = SegHead(ch[3], 64, 1)
        self.conv_out_sp8 = SegHead(ch[2], 64, 1)
        self.conv_out_sp4 = SegHead(ch[1], 64, 1)
        self.conv_out_sp2 = SegHead(ch[0], 64, 1)
        # (stride, feature index in ContextPath output, head) in PaddleSeg's output order.
        flags = {2: use_boundary_2, 4: use_boundary_4, 8: use_boundary_8, 16: use_boundary_16}
        self.detail_strides = [s for s in (2, 4, 8, 16) if flags[s]]
        #: names of the training outputs, in order; one loss per output
        self.train_output_names = ("seg", "aux8", "aux16") + tuple(
            f"detail{s}" for s in self.detail_strides
        )
        for stride, enabled in flags.items():
            if not enabled:
                for param in self._detail_head(stride).parameters():
                    param.stop_gradient = True

    def _detail_head(self, stride: int) -> SegHead:
        return getattr(self, f"conv_out_sp{stride}")

    def forward(self, x: paddle.Tensor) -> List[paddle.Tensor]:
        size = x.shape[2:]
        feat2, feat4, feat8, feat16, cp8, cp16 = self.cp(x)
        logit = resize_to(self.conv_out(self.ffm(feat8, cp8)), size)
        if not self.training:
            return [logit]
        outputs = [
            logit,
            resize_to(self.conv_out8(cp8), size),
            resize_to(self.conv_out16(cp16), size),
        ]
        by_stride = {2: feat2, 4: feat4, 8: feat8, 16: feat16}
        outputs += [self._detail_head(s)(by_stride[s]) for s in self.detail_strides]
        return outputs


register_model(STDCSeg)


def _stdc_seg(backbone_fn, num_classes: int, pool_count_pad: bool, **kwargs) -> STDCSeg:
    return STDCSeg(num_classes, backbone_fn(pool_count_pad=pool_count_pad), **kwargs)


@register_variant(classifier="conv_out.conv_out.weight", backbone_attr="cp.backbone")
def stdc1_seg(num_classes: int = 19, pool_count_pad: bool = False, **kwargs) -> STDCSeg:
    """STDC1-Seg (STDCNet813 backbone; ``pool_count_pad``: see :class:`STDCNet`)."""
    return _stdc_seg(STDC1, num_classes, pool_count_pad, **kwargs)


@register_variant(classifier="conv_out.conv_out.weight", backbone_attr="cp.backbone")
def stdc2_seg(num_classes: int = 19, pool_count_pad: bool = False, **kwargs) -> STDCSeg:
    """STDC2-Seg (STDCNet1446 backbone; ``pool_count_pad``: see :class:`STDCNet`)."""
    return _stdc_seg(STDC2, num_classes, pool_count_pad, **kwargs)
