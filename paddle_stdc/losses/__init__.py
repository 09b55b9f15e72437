"""Paddle-3-correct segmentation losses, registered into PaddleSeg's LOSSES manager."""
