"""Registration of paddle_stdc components into PaddleSeg's managers.

PaddleSeg's YAML configs name components by ``type``; ``paddleseg.cvlibs.SegBuilder``
looks them up in ``paddleseg.cvlibs.manager``. Registering here replaces PaddleSeg's
entries of the same name (``STDCSeg``, ``OhemCrossEntropyLoss`` ...) so that a config
built after ``import paddle_stdc`` yields this project's Paddle-3-correct classes.

Model *variants* (``stdc1_seg`` ..., and the ImageNet backbones ``STDC1`` ...) live in
:data:`MODELS` with what a converter or a loader needs to know of them; their released
weights live in :data:`PRETRAINED` (entries in :mod:`paddle_stdc.zoo`). Both are used by
:func:`paddle_stdc.create_model`, the converters and the README's generated tables.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, TypeVar

import paddleseg  # noqa: F401  (registers PaddleSeg's own components first)
from paddleseg.cvlibs import manager

T = TypeVar("T")

#: Names this project registered, per PaddleSeg manager name.
OWN_COMPONENTS: Dict[str, Dict[str, object]] = {}


@dataclass(frozen=True)
class ModelInfo:
    """A buildable model variant or backbone.

    Attributes:
        name: the name ``create_model`` takes.
        builder: ``builder(**kwargs) -> nn.Layer`` (segmentation models take ``num_classes``).
        kind: ``"segmentation"`` or ``"backbone"``.
        classifier: state-dict key of the final classifier's weight (its first dimension is
            the number of classes of a checkpoint), for segmentation models.
        backbone_attr: dotted path of the backbone sublayer (where ImageNet weights load).
    """

    name: str
    builder: Callable
    kind: str = "segmentation"
    classifier: Optional[str] = None
    backbone_attr: Optional[str] = None


#: Model variants and backbones by name.
MODELS: Dict[str, ModelInfo] = {}


def _register_into(mgr: manager.ComponentManager) -> Callable[[T], T]:
    def deco(obj: T) -> T:
        # Overwrite silently: PaddleSeg's manager warns on every duplicate name.
        mgr.components_dict[obj.__name__] = obj
        OWN_COMPONENTS.setdefault(mgr.name, {})[obj.__name__] = obj
        return obj

    return deco


register_model = _register_into(manager.MODELS)
register_backbone = _register_into(manager.BACKBONES)
register_loss = _register_into(manager.LOSSES)
register_dataset = _register_into(manager.DATASETS)
register_transform = _register_into(manager.TRANSFORMS)


def register_variant(
    fn: Optional[Callable] = None,
    *,
    kind: str = "segmentation",
    classifier: Optional[str] = None,
    backbone_attr: Optional[str] = None,
):
    """Register a builder under its function name (``@register_variant`` or with arguments)."""

    def deco(builder: Callable) -> Callable:
        if builder.__name__ in MODELS:
            raise KeyError(f"model {builder.__name__!r} is registered twice")
        MODELS[builder.__name__] = ModelInfo(
            builder.__name__, builder, kind, classifier, backbone_attr
        )
        return builder

    return deco(fn) if fn is not None else deco


def list_models(kind: Optional[str] = "segmentation") -> List[str]:
    """Names accepted by :func:`paddle_stdc.create_model`, sorted: segmentation models by
    default, ``kind="backbone"`` for the backbones, ``kind=None`` for both."""
    return sorted(n for n, info in MODELS.items() if kind is None or info.kind == kind)


def get_model_info(name: str) -> ModelInfo:
    """The registered model ``name``; a KeyError lists the known names."""
    if name not in MODELS:
        raise KeyError(f"unknown model {name!r}; available: {', '.join(list_models(None))}")
    return MODELS[name]
