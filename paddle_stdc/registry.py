"""Registration of paddle_stdc components into PaddleSeg's managers.

PaddleSeg's YAML configs name components by ``type``; ``paddleseg.cvlibs.SegBuilder``
looks them up in ``paddleseg.cvlibs.manager``. Registering here replaces PaddleSeg's
entries of the same name (``STDCSeg``, ``OhemCrossEntropyLoss`` ...) so that a config
built after ``import paddle_stdc`` yields this project's Paddle-3-correct classes.

Model *variants* (``stdc1_seg`` ...) live in a separate table used by
:func:`paddle_stdc.create_model` and :func:`paddle_stdc.list_models`.
"""

from __future__ import annotations

from typing import Callable, Dict, List, TypeVar

import paddleseg  # noqa: F401  (registers PaddleSeg's own components first)
from paddleseg.cvlibs import manager

T = TypeVar("T")

#: Names this project registered, per PaddleSeg manager name.
OWN_COMPONENTS: Dict[str, Dict[str, object]] = {}

#: Model variants: name -> builder(num_classes=..., **kwargs) -> nn.Layer.
MODEL_VARIANTS: Dict[str, Callable] = {}


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


def register_variant(fn: Callable) -> Callable:
    """Register a model-zoo variant builder under its function name."""
    if fn.__name__ in MODEL_VARIANTS:
        raise KeyError(f"model variant {fn.__name__!r} is registered twice")
    MODEL_VARIANTS[fn.__name__] = fn
    return fn


def list_models() -> List[str]:
    """Names accepted by :func:`paddle_stdc.create_model`, sorted."""
    return sorted(MODEL_VARIANTS)
