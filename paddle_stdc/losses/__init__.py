"""Paddle-3-correct segmentation losses, registered into PaddleSeg's LOSSES manager."""

from paddle_stdc.losses.cross_entropy import CrossEntropyLoss
from paddle_stdc.losses.detail_aggregate import DetailAggregateLoss
from paddle_stdc.losses.mixed_loss import MixedLoss
from paddle_stdc.losses.ohem_cross_entropy import OhemCrossEntropyLoss

__all__ = ["CrossEntropyLoss", "OhemCrossEntropyLoss", "DetailAggregateLoss", "MixedLoss"]
