"""Config loading and component building on top of PaddleSeg's ``Config`` and ``SegBuilder``.

A PaddleSeg user's YAML (``_base_`` inheritance, ``--opts key=value``) works unchanged; after
``import paddle_stdc`` the registries yield this project's models and losses. Additions:
``pretrained=False`` nulls every ``pretrained`` key of the model (tests, offline runs),
``lr_scheduler.type`` may also name a schedule of :mod:`paddle_stdc.engine.schedules`, and
transforms that pad labels pad with their dataset's ``ignore_index`` unless the config says
otherwise (:func:`~paddle_stdc.engine.validate.fill_label_padding`). A
dataset's ``class_names`` (for logs and exports) is not passed to its constructor.
"""

from __future__ import annotations

import copy
from typing import Any, Dict, Optional, Sequence

import paddle
from paddleseg.cvlibs import Config, SegBuilder, manager

import paddle_stdc  # noqa: F401  (registers our components before anything is built)
from paddle_stdc.engine.schedules import OWN_SCHEDULERS
from paddle_stdc.engine.validate import DATASET_EXTRA_KEYS, ConfigError, fill_label_padding
from paddle_stdc.utils.download import WeightsUnavailableError


def _null_pretrained(cfg: Any) -> Any:
    if isinstance(cfg, dict):
        return {k: (None if k == "pretrained" else _null_pretrained(v)) for k, v in cfg.items()}
    if isinstance(cfg, list):
        return [_null_pretrained(v) for v in cfg]
    return cfg


def load_config(
    path: str,
    opts: Optional[Sequence[str]] = None,
    learning_rate: Optional[float] = None,
    batch_size: Optional[int] = None,
    iters: Optional[int] = None,
    pretrained: bool = True,
) -> Config:
    """Parse a YAML config (with ``_base_``) and apply command-line overrides.

    Args:
        path: the YAML file.
        opts: ``key.sub=value`` overrides, as PaddleSeg's ``--opts``.
        learning_rate / batch_size / iters: overrides of the matching top-level keys.
        pretrained: False sets every ``pretrained`` under ``model`` to None.
    """
    try:
        cfg = Config(
            path,
            learning_rate=learning_rate,
            batch_size=batch_size,
            iters=iters,
            opts=list(opts) if opts else None,
        )
    except (AssertionError, RuntimeError, ValueError) as err:  # PaddleSeg's load-time checks
        raise ConfigError(f"{path}: {err}") from err
    if not pretrained and "model" in cfg.dic:
        cfg.dic["model"] = _null_pretrained(cfg.dic["model"])
    fill_label_padding(cfg.dic)  # unset label padding = the dataset's ignore_index
    return cfg


#: Errors of weights and configs that PaddleSeg's builder would bury in a RuntimeError.
_USER_ERRORS = (ConfigError, WeightsUnavailableError)


class Builder(SegBuilder):
    """PaddleSeg's ``SegBuilder`` that also builds :class:`ExpWarmupPolyDecay`, quietly.

    ``pretrained`` weights (a zoo entry, a path or a URL) are loaded by the registered
    factories (:func:`paddle_stdc.registry.build_pretrained`), as under PaddleSeg's own
    ``SegBuilder``; a missing file or a bad key surfaces as its own one-line error."""

    def build_component(self, cfg: Dict[str, Any]) -> Any:
        if cfg.get("type") in manager.DATASETS.components_dict:
            cfg = {k: v for k, v in cfg.items() if k not in DATASET_EXTRA_KEYS}
        try:
            return super().build_component(cfg)
        except RuntimeError as err:  # PaddleSeg re-raises every failure as "Tried to create"
            cause = err.__context__
            if isinstance(cause, _USER_ERRORS) and not isinstance(err, _USER_ERRORS):
                raise cause from None
            raise

    @classmethod
    def show_msg(cls, name: str, cfg: Dict[str, Any]) -> None:
        """Quiet: the tools print the merged config once instead of once per component."""

    @property
    def lr_scheduler(self) -> paddle.optimizer.lr.LRScheduler:
        if "_lr_scheduler" not in self.__dict__:
            self._lr_scheduler = self.new_lr_scheduler()
        return self._lr_scheduler

    def new_lr_scheduler(self) -> paddle.optimizer.lr.LRScheduler:
        """A fresh scheduler of the config at step 0 (not the optimizer's)."""
        cfg = self.config.lr_scheduler_cfg
        if cfg.get("type") not in OWN_SCHEDULERS:
            return SegBuilder.lr_scheduler.func(self)
        schedule = OWN_SCHEDULERS[cfg.pop("type")]
        cfg.setdefault("decay_steps", self.config.iters)
        return schedule(**cfg)

    @property
    def optimizer(self) -> paddle.optimizer.Optimizer:
        if not hasattr(self, "_optimizer"):
            opt_cfg = copy.deepcopy(self.config.optimizer_cfg)
            if not opt_cfg:
                raise KeyError("the config has no `optimizer` section")
            opt_type = {"sgd": "SGD", "adam": "Adam"}.get(opt_cfg["type"], opt_cfg["type"])
            if opt_type == "SGD" and "momentum" in opt_cfg:
                opt_type = "Momentum"  # PaddleSeg's convention: SGD + momentum -> Momentum
            opt_cfg["type"] = opt_type
            factory = self.build_component(opt_cfg)
            self._optimizer = factory(self.model, self.lr_scheduler)
        return self._optimizer

    def test_config(self) -> Dict[str, Any]:
        """The config's ``test_config`` section (evaluation options), or {}."""
        return dict(self.config.dic.get("test_config", {}) or {})
