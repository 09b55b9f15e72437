"""Model zoo: one module per architecture, backbones in ``backbones/``."""

from __future__ import annotations

from typing import Optional

import paddle.nn as nn

from paddle_stdc.models import (  # noqa: F401  (registration)
    backbones,
    bisenetv1,
    bisenetv2,
    stdcseg,
)
from paddle_stdc.registry import MODEL_VARIANTS, list_models

#: Backbones ``create_model`` also builds, by their registered names.
BACKBONE_NAMES = {
    name: getattr(backbones, name)
    for name in ("STDC1", "STDC2", "ResNet18V1c", "ResNet50V1c", "ResNet18D", "ResNet50D")
}


def create_model(
    name: str,
    num_classes: int = 19,
    pretrained: Optional[str] = None,
    backbone_pretrained: Optional[str] = None,
    **kwargs,
) -> nn.Layer:
    """Build a registered model variant (see :func:`list_models`).

    Args:
        name: variant name, e.g. ``"stdc1_seg"``.
        num_classes: number of output classes.
        pretrained: path or URL of whole-model weights.
        backbone_pretrained: path or URL of ImageNet backbone weights.
    """
    if name in BACKBONE_NAMES:  # an ImageNet backbone alone (e.g. for converted weights)
        if backbone_pretrained:
            raise ValueError(f"{name} is a backbone: give its weights as `pretrained`")
        return BACKBONE_NAMES[name](pretrained=pretrained, **kwargs)
    if name not in MODEL_VARIANTS:
        known = list_models() + sorted(BACKBONE_NAMES)
        raise KeyError(f"unknown model {name!r}; available: {', '.join(known)}")
    return MODEL_VARIANTS[name](
        num_classes=num_classes,
        pretrained=pretrained,
        backbone_pretrained=backbone_pretrained,
        **kwargs,
    )
