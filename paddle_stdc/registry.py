"""Registration of paddle_stdc components into PaddleSeg's managers.

PaddleSeg's YAML configs name components by ``type``; ``paddleseg.cvlibs.SegBuilder``
looks them up in ``paddleseg.cvlibs.manager``. Registering here replaces PaddleSeg's
entries of the same name (``STDCSeg``, ``OhemCrossEntropyLoss`` ...) so that a config
built after ``import paddle_stdc`` yields this project's Paddle-3-correct classes.

Models and backbones are stored in PaddleSeg's managers as *factories* that take
``pretrained`` as PaddleSeg's constructors do (None, a zoo entry, a path or a URL): the
factory builds the network with the options a zoo entry's weights need, then loads them
(:func:`build_pretrained`). So PaddleSeg's own ``SegBuilder`` and our
:class:`paddle_stdc.engine.config.Builder` build a config the same way, and the network
classes themselves stay free of file I/O. ``inspect.unwrap(manager.MODELS["STDCSeg"])`` is
the class; the module-level names (``STDCSeg``, ``STDC1`` ...) stay the plain classes and
builders.

Model *variants* (``stdc1_seg`` ..., and the ImageNet backbones ``STDC1`` ...) live in
:data:`MODELS` with what a converter or a loader needs to know of them; their released
weights live in :data:`PRETRAINED` (entries in :mod:`paddle_stdc.zoo`). Both are used by
:func:`paddle_stdc.create_model`, the converters and the README's generated tables.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, TypeVar

import paddle.nn as nn
import paddleseg  # noqa: F401  (registers PaddleSeg's own components first)
from paddleseg.cvlibs import manager

from paddle_stdc.weights import load_pretrained

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


#: How each layer built by :func:`build_pretrained` was built: (builder, keyword arguments).
_BUILT: weakref.WeakKeyDictionary[nn.Layer, tuple] = weakref.WeakKeyDictionary()


def _accepts(build: Callable, key: str) -> bool:
    """``build`` takes the keyword ``key`` (or any keyword)."""
    try:
        params = inspect.signature(build).parameters
    except (TypeError, ValueError):
        return True
    return key in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def _rebuild_backbone(backbone: Any, options: Dict[str, Any], name: str, ref: str) -> nn.Layer:
    """``backbone`` built again with the ``options`` it was not given (its own keys win); a
    :class:`~paddle_stdc.engine.validate.ConfigError` when it cannot take them."""
    from paddle_stdc.engine.validate import ConfigError  # late: a user error, rarely raised

    record = _BUILT.get(backbone) if isinstance(backbone, nn.Layer) else None
    if record is None or not all(_accepts(record[0], k) for k in options):
        raise ConfigError(
            f"{name}: the weights {ref} need the options {options}, which neither {name} nor "
            "its backbone takes; give a model whose backbone takes them"
        )
    build, given = record
    missing = {k: v for k, v in options.items() if k not in given}
    if not missing:
        return backbone
    try:
        return build_pretrained(build, {**given, **missing})
    except TypeError as err:
        raise ConfigError(
            f"{name}: the weights {ref} need the backbone options {missing}, which its "
            f"backbone type fixes ({err}); use a backbone class that takes them (e.g. "
            "`type: ResNet` with `depth`) or set them under `model.backbone`"
        ) from err


def build_pretrained(
    build: Callable[..., nn.Layer],
    kwargs: Mapping[str, Any],
    pretrained: Optional[str] = None,
    args: Sequence[Any] = (),
) -> nn.Layer:
    """``build(*args, **kwargs)`` with the model options the zoo entry ``pretrained`` needs
    (``kwargs`` win), then ``pretrained`` (entry, path or URL) loaded into it.

    The one path from a config's component to a network with weights, for PaddleSeg's
    ``SegBuilder`` and ours alike. Options ``build`` does not take go to the ``backbone``
    argument, which is built again with them (e.g. ``pool_count_pad`` of an STDC-Seg entry).
    """
    from paddle_stdc import zoo  # late: zoo -> convert -> models -> this module

    name = getattr(build, "__name__", "component")
    options = zoo.entry_options(pretrained, kwargs)
    own = {k: v for k, v in options.items() if _accepts(build, k)}
    foreign = {k: v for k, v in options.items() if k not in own}
    kwargs = dict(kwargs)
    if foreign:
        kwargs["backbone"] = _rebuild_backbone(kwargs.get("backbone"), foreign, name, pretrained)
    kwargs.update(own)
    layer = build(*args, **kwargs)
    if not isinstance(layer, nn.Layer):
        raise TypeError(f"{name} built a {type(layer).__name__}, not a paddle.nn.Layer")
    _BUILT[layer] = (build, kwargs)
    if pretrained:
        load_pretrained(layer, pretrained)
    return layer


def _with_pretrained(obj: Callable[..., nn.Layer]) -> Callable[..., nn.Layer]:
    """The factory PaddleSeg's manager stores for the network ``obj``: ``obj``'s arguments
    plus ``pretrained``, built by :func:`build_pretrained`."""

    def factory(*args: Any, pretrained: Optional[str] = None, **kwargs: Any) -> nn.Layer:
        return build_pretrained(obj, kwargs, pretrained, args)

    functools.update_wrapper(factory, obj, updated=())  # name, module, doc, __wrapped__
    sig = inspect.signature(obj)
    params = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    params.append(inspect.Parameter("pretrained", inspect.Parameter.KEYWORD_ONLY, default=None))
    params += [p for p in sig.parameters.values() if p.kind is p.VAR_KEYWORD]
    returns = obj if inspect.isclass(obj) else sig.return_annotation
    factory.__signature__ = sig.replace(parameters=params, return_annotation=returns)
    factory.__annotations__ = {"return": returns} if inspect.isclass(obj) else obj.__annotations__
    return factory


def _register_into(mgr: manager.ComponentManager, networks: bool = False) -> Callable[[T], T]:
    def deco(obj: T) -> T:
        entry = _with_pretrained(obj) if networks else obj
        # Overwrite silently: PaddleSeg's manager warns on every duplicate name.
        mgr.components_dict[obj.__name__] = entry
        OWN_COMPONENTS.setdefault(mgr.name, {})[obj.__name__] = entry
        return obj

    return deco


register_model = _register_into(manager.MODELS, networks=True)
register_backbone = _register_into(manager.BACKBONES, networks=True)
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
