"""Backbones, registered into PaddleSeg's BACKBONES manager."""

from paddle_stdc.models.backbones.stdcnet import STDC1, STDC2, STDCNet

__all__ = ["STDCNet", "STDC1", "STDC2"]
