"""Config validation before training starts: every error names the key and the fix.

PaddleSeg's own load-time checks (loss.types vs loss.coef lengths, ``--opts`` keys) are turned
into :class:`ConfigError` by :func:`paddle_stdc.engine.config.load_config`. Beyond them,
PaddleSeg accepts a misspelled top-level key silently (``iter: 1000`` trains for the base
config's ``iters``), reports a ``num_classes`` mismatch as a bare assertion (and not at all
for the file-list ``Dataset``), and finds a loss list of the wrong length only in the first
step. :func:`validate_config` checks the merged YAML; :func:`check_loss_count` checks the
built model's training outputs against ``loss.types`` and ``loss.coef``.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import paddle.nn as nn
from paddleseg.cvlibs import Config, manager

#: Top-level keys PaddleSeg 2.8's Config and this project read.
TOP_LEVEL_KEYS = frozenset({
    "_base_", "_inherited_", "batch_size", "iters", "train_dataset", "val_dataset",
    "test_dataset", "model", "loss", "distill_loss", "optimizer", "lr_scheduler", "export",
    "test_config", "to_static_training", "precision", "amp_level", "palette",
})  # fmt: skip
_MANAGERS = (manager.MODELS, manager.BACKBONES, manager.DATASETS, manager.TRANSFORMS,
             manager.LOSSES)  # fmt: skip


class ConfigError(ValueError):
    """The config cannot train as written; the message names the key and the fix."""


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" -- did you mean {close[0]!r}?" if close else ""


def _component_class(type_name: str, where: str) -> Any:
    for mgr in _MANAGERS:
        if type_name in mgr.components_dict:
            return mgr.components_dict[type_name]
    known = sorted({n for m in _MANAGERS for n in m.components_dict})
    raise ConfigError(f"{where}.type: unknown component {type_name!r}{_suggest(type_name, known)}")


def _components(dic: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any]]]:
    """(key path, component dict) for model, backbone, datasets, transforms and losses."""
    model = dic.get("model")
    if isinstance(model, dict):
        yield "model", model
        if isinstance(model.get("backbone"), dict):
            yield "model.backbone", model["backbone"]
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        dataset = dic.get(split)
        if isinstance(dataset, dict):
            yield split, dataset
            for i, t in enumerate(dataset.get("transforms") or []):
                if isinstance(t, dict):
                    yield f"{split}.transforms[{i}]", t
    for i, loss in enumerate((dic.get("loss") or {}).get("types") or []):
        if isinstance(loss, dict):
            yield f"loss.types[{i}]", loss


def _parameters(obj: Any) -> Optional[Dict[str, inspect.Parameter]]:
    """Keyword arguments ``obj`` accepts; a variant builder ``f(**kwargs) -> Cls`` gives
    ``Cls``'s; None when they cannot be known (``**kwargs`` passed on to the unknown)."""
    try:
        params = dict(inspect.signature(obj.__init__ if inspect.isclass(obj) else obj).parameters)
    except (TypeError, ValueError):
        return None
    if not any(p.kind == p.VAR_KEYWORD for p in params.values()):
        return params
    if inspect.isfunction(obj):
        try:
            target = typing.get_type_hints(obj).get("return")
        except Exception:  # noqa: BLE001  (unresolvable annotations: no check)
            return None
        if inspect.isclass(target):
            return _parameters(target)
    return None


def _check_keys(where: str, comp: Dict[str, Any]) -> None:
    if "type" not in comp:
        raise ConfigError(f"{where}: no `type` key; name the component class")
    params = _parameters(_component_class(comp["type"], where))
    if params is None:
        return
    accepted = [name for name in params if name not in ("self", "args")]
    accepted += ["pretrained"]  # loaded by the Builder after building, not by a constructor
    for key in comp:
        if key != "type" and key not in accepted:
            raise ConfigError(
                f"{where}.{key}: {comp['type']} takes no argument {key!r}"
                f"{_suggest(key, accepted)} (it takes: {', '.join(accepted)})"
            )


def _dataset_classes(dataset: Dict[str, Any]) -> Optional[int]:
    """The class count a dataset config implies (its ``num_classes`` or the class's)."""
    if "num_classes" in dataset:
        return int(dataset["num_classes"])
    cls = _component_class(dataset["type"], "dataset")
    return getattr(cls, "NUM_CLASSES", None)


def validate_config(cfg: Config, for_training: bool = True) -> None:
    """Raise :class:`ConfigError` for unknown keys, class-count or loss-list mistakes."""
    dic = cfg.dic
    for key in dic:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"unknown top-level key {key!r}{_suggest(key, sorted(TOP_LEVEL_KEYS))}; "
                f"known keys: {', '.join(sorted(k for k in TOP_LEVEL_KEYS if k[0] != '_'))}"
            )
    required = ("model", "train_dataset", "loss", "optimizer", "iters", "batch_size")
    for key in required if for_training else ("model",):
        if dic.get(key) in (None, {}, []):
            raise ConfigError(f"the config has no `{key}`; add it (or inherit it with _base_)")
    for where, comp in _components(dic):
        _check_keys(where, comp)
    model_classes = (dic.get("model") or {}).get("num_classes")
    for split in ("train_dataset", "val_dataset"):
        dataset = dic.get(split)
        if not isinstance(dataset, dict) or model_classes is None:
            continue
        data_classes = _dataset_classes(dataset)
        if data_classes is not None and data_classes != model_classes:
            raise ConfigError(
                f"model.num_classes is {model_classes} but {split} ({dataset['type']}) has "
                f"{data_classes} classes: set model.num_classes: {data_classes}"
                + (" (or fix the dataset's num_classes)" if "num_classes" in dataset else "")
            )


def check_loss_count(model: nn.Layer, loss_cfg: Dict[str, List[Any]]) -> None:
    """The model's training outputs and ``loss.types`` must pair up one to one."""
    names = getattr(model, "train_output_names", None)
    if names is None:
        return
    names, types = list(names), loss_cfg.get("types") or []
    if len(names) != len(types):
        raise ConfigError(
            f"{type(model).__name__} returns {len(names)} training outputs {names} but "
            f"loss.types has {len(types)} entries: give one loss (and one loss.coef) per "
            "output, in that order"
        )
