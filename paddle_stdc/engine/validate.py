"""Config validation before training starts: every error names the key and the fix.

PaddleSeg's own load-time checks (loss.types vs loss.coef lengths, ``--opts`` keys) are turned
into :class:`ConfigError` by :func:`paddle_stdc.engine.config.load_config`. Beyond them,
PaddleSeg accepts a misspelled top-level key silently (``iter: 1000`` trains for the base
config's ``iters``), reports a ``num_classes`` mismatch as a bare assertion (and not at all
for the file-list ``Dataset``), and finds a loss list of the wrong length only in the first
step. :func:`validate_config` checks the merged YAML -- top-level keys, every component's
``type`` and keys (model, backbone, datasets, transforms, each ``loss.types`` entry and the
losses inside a ``MixedLoss``), ``optimizer`` and ``lr_scheduler`` -- suggesting the closest
name ("did you mean") -- and the datasets' class names (a ``class_names`` list or a labels
file, :func:`paddle_stdc.data.palettes.config_class_names`) against their class count;
:func:`check_loss_count` checks the built model's training outputs
against ``loss.types`` and ``loss.coef``.

Label padding: PaddleSeg's transforms pad labels with ``label_padding_value`` (default 255)
whatever the dataset's ``ignore_index``; with ``ignore_index: 11`` the first padded crop
crashed the loss kernel. :func:`fill_label_padding` gives every transform that takes
``label_padding_value`` (or ``ignore_index``) and leaves it out its dataset's ``ignore_index``,
and :func:`validate_config` refuses a value that is neither a class nor the ignore index.
"""

from __future__ import annotations

import difflib
import inspect
import typing
from dataclasses import dataclass
from typing import Any, Dict, Iterator, List, Optional, Sequence, Tuple

import paddle
import paddle.nn as nn
from paddleseg.cvlibs import Config, manager

from paddle_stdc.data.palettes import config_class_names
from paddle_stdc.engine.schedules import OWN_SCHEDULERS

#: Top-level keys PaddleSeg 2.8's Config and this project read.
TOP_LEVEL_KEYS = frozenset({
    "_base_", "_inherited_", "batch_size", "iters", "train_dataset", "val_dataset",
    "test_dataset", "model", "loss", "distill_loss", "optimizer", "lr_scheduler", "export",
    "test_config", "to_static_training", "precision", "amp_level", "palette",
})  # fmt: skip
_MANAGERS = (manager.MODELS, manager.BACKBONES, manager.DATASETS, manager.TRANSFORMS,
             manager.LOSSES)  # fmt: skip
#: Dataset keys no constructor takes: class names for logs and exports (the Builder drops them).
DATASET_EXTRA_KEYS = ("class_names",)
#: Keys of the ``loss`` section; PaddleSeg's builder reads these two.
LOSS_KEYS = ("types", "coef")
#: Lower-case optimizer names PaddleSeg 2.8's builder accepts for compatibility.
OPTIMIZER_ALIASES = {"sgd": "SGD", "adam": "Adam"}
#: lr_scheduler keys PaddleSeg's builder consumes itself (a LinearWarmup around the schedule).
WARMUP_KEYS = ("warmup_iters", "warmup_start_lr")


class ConfigError(ValueError):
    """The config cannot train as written; the message names the key and the fix."""


def _suggest(word: str, choices: Sequence[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" -- did you mean {close[0]!r}?" if close else ""


def _component_class(type_name: str, where: str, registry: Any = None) -> Any:
    """The registered class of ``type_name``; suggestions come from ``registry`` if given."""
    for mgr in _MANAGERS:
        if type_name in mgr.components_dict:
            return mgr.components_dict[type_name]
    pool = [registry] if registry is not None else _MANAGERS
    known = sorted({n for m in pool for n in m.components_dict})
    raise ConfigError(f"{where}.type: unknown component {type_name!r}{_suggest(type_name, known)}")


def _losses(where: str, types: Any) -> Iterator[Tuple[str, Dict[str, Any], Any]]:
    """Every loss entry, including the ``losses`` inside a ``MixedLoss``."""
    for i, loss in enumerate(types if isinstance(types, list) else []):
        if isinstance(loss, dict):
            yield f"{where}[{i}]", loss, manager.LOSSES
            yield from _losses(f"{where}[{i}].losses", loss.get("losses"))


def _components(dic: Dict[str, Any]) -> Iterator[Tuple[str, Dict[str, Any], Any]]:
    """(key path, component dict, registry) for model, backbone, datasets, transforms and
    losses."""
    model = dic.get("model")
    if isinstance(model, dict):
        yield "model", model, manager.MODELS
        if isinstance(model.get("backbone"), dict):
            yield "model.backbone", model["backbone"], manager.BACKBONES
    for split in ("train_dataset", "val_dataset", "test_dataset"):
        dataset = dic.get(split)
        if isinstance(dataset, dict):
            yield split, dataset, manager.DATASETS
            for i, t in enumerate(dataset.get("transforms") or []):
                if isinstance(t, dict):
                    yield f"{split}.transforms[{i}]", t, manager.TRANSFORMS
    yield from _losses("loss.types", (dic.get("loss") or {}).get("types"))


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


def _check_arguments(where: str, comp: Dict[str, Any], cls: Any, extra: Sequence[str]) -> None:
    """Every key but ``type`` must be an argument of ``cls`` (or one of ``extra``)."""
    params = _parameters(cls)
    if params is None:
        return
    accepted = [
        n for n, p in params.items() if n not in ("self", "args") and p.kind != p.VAR_POSITIONAL
    ]
    accepted += list(extra)
    for key in comp:
        if key != "type" and key not in accepted:
            raise ConfigError(
                f"{where}.{key}: {comp['type']} takes no argument {key!r}"
                f"{_suggest(key, accepted)} (it takes: {', '.join(accepted)})"
            )


def _check_keys(where: str, comp: Dict[str, Any], registry: Any = None) -> None:
    if "type" not in comp:
        raise ConfigError(f"{where}: no `type` key; name the component class")
    cls = _component_class(comp["type"], where, registry)
    # networks take `pretrained` (our registered factories load it after building them)
    networks = registry in (manager.MODELS, manager.BACKBONES)
    extra = ["pretrained"] if networks else []
    if registry is manager.DATASETS:
        extra += DATASET_EXTRA_KEYS  # metadata read from the config (class names)
    _check_arguments(where, comp, cls, extra)


def _check_loss_section(loss: Any) -> None:
    if not isinstance(loss, dict):
        raise ConfigError(f"loss must be a mapping with {' and '.join(LOSS_KEYS)}, got {loss!r}")
    for key in loss:
        if key not in LOSS_KEYS:
            raise ConfigError(
                f"loss.{key}: unknown key{_suggest(key, LOSS_KEYS)} "
                f"(the loss section takes: {', '.join(LOSS_KEYS)})"
            )


def _check_optimizer(opt: Any) -> None:
    """``optimizer.type`` must name a registered optimizer and every key one of its arguments;
    ``SGD`` with ``momentum`` is ``Momentum``, as in PaddleSeg."""
    if not isinstance(opt, dict) or "type" not in opt:
        raise ConfigError("optimizer: no `type` key; name the optimizer, e.g. type: SGD")
    registry = manager.OPTIMIZERS.components_dict
    name = OPTIMIZER_ALIASES.get(opt["type"], opt["type"])
    if name not in registry:
        known = sorted(registry) + sorted(OPTIMIZER_ALIASES)
        raise ConfigError(
            f"optimizer.type: unknown optimizer {opt['type']!r}{_suggest(str(name), known)} "
            f"(known: {', '.join(sorted(registry))})"
        )
    if name == "SGD" and "momentum" in opt:
        name = "Momentum"
    _check_arguments("optimizer", opt, registry[name], [])


def _schedulers() -> Dict[str, Any]:
    lr = paddle.optimizer.lr
    classes = {n: getattr(lr, n) for n in dir(lr) if inspect.isclass(getattr(lr, n))}
    known = {
        n: c for n, c in classes.items() if issubclass(c, lr.LRScheduler) and n != "LRScheduler"
    }
    return {**known, **OWN_SCHEDULERS}


def _check_lr_scheduler(sched: Any) -> None:
    """``lr_scheduler.type`` names a ``paddle.optimizer.lr`` schedule, every key is one of its
    arguments or PaddleSeg's warmup keys, and its required arguments are given."""
    if not isinstance(sched, dict) or "type" not in sched:
        raise ConfigError("lr_scheduler: no `type` key; name the schedule, e.g. PolynomialDecay")
    known = _schedulers()
    name = sched["type"]
    if name not in known:
        raise ConfigError(
            f"lr_scheduler.type: unknown schedule {name!r}{_suggest(str(name), sorted(known))} "
            f"(known schedules: {', '.join(sorted(known))})"
        )
    _check_arguments("lr_scheduler", sched, known[name], WARMUP_KEYS)
    if ("warmup_iters" in sched) != ("warmup_start_lr" in sched):
        raise ConfigError("lr_scheduler: warmup needs both warmup_iters and warmup_start_lr")
    filled = {"decay_steps"} if name == "PolynomialDecay" else set()  # PaddleSeg sets it
    params = _parameters(known[name]) or {}
    for arg, param in params.items():
        needed = param.default is param.empty and param.kind == param.POSITIONAL_OR_KEYWORD
        if needed and arg not in ("self", *filled) and arg not in sched:
            raise ConfigError(f"lr_scheduler: {name} needs `{arg}`; add lr_scheduler.{arg}")


def _dataset_classes(dataset: Dict[str, Any]) -> Optional[int]:
    """The class count a dataset config implies (its ``num_classes`` or the class's)."""
    if "num_classes" in dataset:
        return int(dataset["num_classes"])
    cls = _component_class(dataset["type"], "dataset")
    return getattr(cls, "NUM_CLASSES", None)


#: Transform arguments whose value fills label pixels the image did not have.
LABEL_FILL_KEYS = ("label_padding_value",)
DATASET_SPLITS = ("train_dataset", "val_dataset", "test_dataset")


def dataset_ignore_index(dataset: Dict[str, Any]) -> int:
    """The ignore index a dataset config implies: its ``ignore_index`` key, else its class's
    ``IGNORE_INDEX`` or constructor default, else 255."""
    if "ignore_index" in dataset:
        return int(dataset["ignore_index"])
    cls = _component_class(dataset["type"], "dataset")
    if getattr(cls, "IGNORE_INDEX", None) is not None:
        return int(cls.IGNORE_INDEX)
    param = (_parameters(cls) or {}).get("ignore_index")
    return 255 if param is None or param.default is param.empty else int(param.default)


@dataclass
class LabelFill:
    """The value a dataset transform pads labels with."""

    key: str  # e.g. "train_dataset.transforms[1].label_padding_value"
    transform: str
    value: Any
    num_classes: Optional[int]
    ignore_index: int

    @property
    def ok(self) -> bool:
        values = self.value if isinstance(self.value, (list, tuple)) else [self.value]
        top = self.num_classes if self.num_classes is not None else float("inf")
        return all(
            isinstance(v, (int, float)) and float(v).is_integer()
            and (v == self.ignore_index or 0 <= v < top)
            for v in values
        )  # fmt: skip

    def describe(self) -> str:
        if self.value == self.ignore_index:
            how = " (the dataset's ignore_index)"
        else:
            how = " (a class id)" if self.ok else " (neither a class nor the ignore_index!)"
        return f"{self.transform} pads labels with {self.value}{how}"

    def error(self) -> str:
        classes = f"a class id (0..{self.num_classes - 1})" if self.num_classes else "a class id"
        return (
            f"{self.key}: {self.value} is neither {classes} nor the dataset's ignore_index "
            f"{self.ignore_index}; allowed: {self.ignore_index} (padding ignored, recommended) "
            "or a class id -- or leave the key out to pad with the ignore_index"
        )


def fill_label_padding(dic: Dict[str, Any]) -> List[LabelFill]:
    """Give every dataset transform that takes ``label_padding_value`` (or ``ignore_index``)
    and leaves it out its dataset's ``ignore_index``, in ``dic``; returns the padding values."""
    fills = []
    for split in DATASET_SPLITS:
        dataset = dic.get(split)
        if not isinstance(dataset, dict) or "type" not in dataset:
            continue
        ignore_index = dataset_ignore_index(dataset)
        num_classes = _dataset_classes(dataset)
        for i, t in enumerate(dataset.get("transforms") or []):
            if not isinstance(t, dict) or "type" not in t:
                continue
            params = _parameters(_component_class(t["type"], f"{split}.transforms[{i}]")) or {}
            if "ignore_index" in params:
                t.setdefault("ignore_index", ignore_index)
            for key in LABEL_FILL_KEYS:
                if key in params:
                    t.setdefault(key, ignore_index)
                    where = f"{split}.transforms[{i}].{key}"
                    fills.append(LabelFill(where, t["type"], t[key], num_classes, ignore_index))
    return fills


def validate_config(cfg: Config, for_training: bool = True) -> None:
    """Raise :class:`ConfigError` for unknown keys, class-count, label-padding or loss-list
    mistakes; fills in label padding (:func:`fill_label_padding`).

    Every section present is checked; ``for_training`` also requires the training sections.
    """
    dic = cfg.dic
    for key in dic:
        if key not in TOP_LEVEL_KEYS:
            raise ConfigError(
                f"unknown top-level key {key!r}{_suggest(key, sorted(TOP_LEVEL_KEYS))}; "
                f"known keys: {', '.join(sorted(k for k in TOP_LEVEL_KEYS if k[0] != '_'))}"
            )
    required = ("model", "train_dataset", "loss", "optimizer", "lr_scheduler", "iters",
                "batch_size")  # fmt: skip
    for key in required if for_training else ("model",):
        if dic.get(key) in (None, {}, []):
            raise ConfigError(f"the config has no `{key}`; add it (or inherit it with _base_)")
    if dic.get("loss") not in (None, {}):
        _check_loss_section(dic["loss"])
    for where, comp, registry in _components(dic):
        _check_keys(where, comp, registry)
    if dic.get("optimizer") not in (None, {}):
        _check_optimizer(dic["optimizer"])
    if dic.get("lr_scheduler") not in (None, {}):
        _check_lr_scheduler(dic["lr_scheduler"])
    for fill in fill_label_padding(dic):
        if not fill.ok:
            raise ConfigError(fill.error())
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
    try:
        config_class_names(dic)
    except (OSError, ValueError) as err:
        raise ConfigError(str(err)) from None


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
