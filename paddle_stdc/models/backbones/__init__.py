"""Backbones, registered into PaddleSeg's BACKBONES manager and, as ``create_model`` names
for ImageNet weights, into :data:`paddle_stdc.registry.MODELS`."""

from paddle_stdc.models.backbones.resnet import (
    ResNet,
    ResNet18,
    ResNet18D,
    ResNet18V1c,
    ResNet50,
    ResNet50D,
    ResNet50V1c,
)
from paddle_stdc.models.backbones.stdcnet import STDC1, STDC2, STDCNet
from paddle_stdc.registry import register_variant

__all__ = [
    "STDCNet",
    "STDC1",
    "STDC2",
    "ResNet",
    "ResNet18",
    "ResNet50",
    "ResNet18V1c",
    "ResNet50V1c",
    "ResNet18D",
    "ResNet50D",
]

for _builder in (STDC1, STDC2, ResNet18, ResNet50, ResNet18V1c, ResNet50V1c, ResNet18D, ResNet50D):
    register_variant(_builder, kind="backbone")
