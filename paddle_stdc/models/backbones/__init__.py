"""Backbones, registered into PaddleSeg's BACKBONES manager."""

from paddle_stdc.models.backbones.resnet import (
    ResNet,
    ResNet18D,
    ResNet18V1c,
    ResNet50D,
    ResNet50V1c,
)
from paddle_stdc.models.backbones.stdcnet import STDC1, STDC2, STDCNet

__all__ = [
    "STDCNet",
    "STDC1",
    "STDC2",
    "ResNet",
    "ResNet18V1c",
    "ResNet50V1c",
    "ResNet18D",
    "ResNet50D",
]
