"""``create_model``: build a registered model, then load weights named by the zoo or a path.

Weights are loaded here, after the network is built, never inside a layer constructor. A zoo
entry (:mod:`paddle_stdc.zoo`) also decides the model options its weights need (e.g. the
pooling convention of the implementation that trained them) and its number of classes.
"""

from __future__ import annotations

from typing import Optional

import paddle.nn as nn

from paddle_stdc import (
    models,  # noqa: F401  (registers the models)
    zoo,
)
from paddle_stdc.registry import get_model_info
from paddle_stdc.weights import load_pretrained


def _entry_options(ref: Optional[str], model: str, kwargs: dict, backbone: bool) -> dict:
    """Model options (and number of classes) of the zoo entry ``ref`` if it is one, under the
    caller's own ones (:func:`paddle_stdc.zoo.entry_options`), after checking the entry holds
    weights of ``model`` (``backbone``: ``ref`` was given as ``backbone_pretrained``)."""
    if not ref or not zoo.is_entry(ref):
        return {}
    entry = zoo.get_pretrained(ref)
    if backbone and get_model_info(entry.model).kind != "backbone":
        raise ValueError(f"{ref} holds weights of {entry.model}: pass it as `pretrained`")
    if not backbone and entry.model != model:
        raise ValueError(f"{ref} holds weights of {entry.model}, not of {model}")
    options = zoo.entry_options(ref, kwargs)
    if not backbone and entry.num_classes is not None and "num_classes" not in kwargs:
        options["num_classes"] = entry.num_classes
    return options


def create_model(
    name: str,
    num_classes: Optional[int] = None,
    pretrained: Optional[str] = None,
    backbone_pretrained: Optional[str] = None,
    **kwargs,
) -> nn.Layer:
    """Build model ``name`` (see :func:`paddle_stdc.list_models`; backbones included) and load
    weights.

    Args:
        name: e.g. ``"stdc1_seg"``, or a backbone such as ``"STDC1"``.
        num_classes: number of classes K (default: the entry's, else 19).
        pretrained: whole-model weights: a zoo entry name, a path or a URL. An entry also sets
            the model options and number of classes its weights need.
        backbone_pretrained: ImageNet weights of the backbone (zoo entry, path or URL).
        **kwargs: model options.
    """
    info = get_model_info(name)
    is_backbone = info.kind == "backbone"
    if is_backbone and backbone_pretrained:
        raise ValueError(f"{name} is a backbone: give its weights as `pretrained`")
    if backbone_pretrained and info.backbone_attr is None:
        raise ValueError(f"{name} has no separate backbone; use `pretrained` for its weights")
    kwargs.update(_entry_options(pretrained, name, kwargs, backbone=is_backbone))
    kwargs.update(_entry_options(backbone_pretrained, name, kwargs, backbone=True))
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if not is_backbone:
        kwargs.setdefault("num_classes", 19)
    model = info.builder(**kwargs)
    if backbone_pretrained:
        load_pretrained(_sublayer(model, info.backbone_attr), backbone_pretrained, strict=True)
    if pretrained:
        load_pretrained(model, pretrained, strict=True)
    return model


def _sublayer(model: nn.Layer, path: str) -> nn.Layer:
    for part in path.split("."):
        model = getattr(model, part)
    return model
