"""Loading weights into a built layer with an honest report of what matched."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Dict, List, Tuple

import paddle
import paddle.nn as nn

from paddle_stdc.utils.download import resolve_weights

logger = logging.getLogger("paddle_stdc")


@dataclass
class LoadReport:
    """Which keys of a state dict were loaded, missing, unexpected or mis-shaped."""

    loaded: List[str] = field(default_factory=list)
    missing: List[str] = field(default_factory=list)
    unexpected: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, list, list]] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        return not (self.missing or self.unexpected or self.mismatched)

    def summary(self) -> str:
        lines = [
            f"loaded {len(self.loaded)} tensors; missing {len(self.missing)}, "
            f"unexpected {len(self.unexpected)}, shape-mismatched {len(self.mismatched)}"
        ]
        lines += [f"  missing: {k}" for k in self.missing[:20]]
        lines += [f"  unexpected: {k}" for k in self.unexpected[:20]]
        lines += [f"  mismatched: {k} {a} vs {b}" for k, a, b in self.mismatched[:20]]
        return "\n".join(lines)


def load_state(layer: nn.Layer, state: Dict[str, object], strict: bool = False) -> LoadReport:
    """Copy matching tensors of ``state`` into ``layer``; raise on any mismatch if ``strict``."""
    own = layer.state_dict()
    report = LoadReport()
    to_set = {}
    for key, value in own.items():
        if key not in state:
            report.missing.append(key)
            continue
        src_shape = list(state[key].shape)
        if src_shape != list(value.shape):
            report.mismatched.append((key, src_shape, list(value.shape)))
            continue
        to_set[key] = state[key]
        report.loaded.append(key)
    report.unexpected = sorted(set(state) - set(own))
    if strict and not report.exact:
        raise ValueError(f"state dict does not match {type(layer).__name__}:\n{report.summary()}")
    layer.set_state_dict(to_set)
    return report


def load_pretrained(layer: nn.Layer, ref: str, strict: bool = False) -> LoadReport:
    """Load weights from a path, a URL or an entry name of :mod:`paddle_stdc.zoo` into ``layer``
    and log what matched (the file I/O of model building: never inside a layer constructor)."""
    from paddle_stdc import zoo  # late: zoo -> convert -> models, and models need this module

    if zoo.is_entry(ref):
        path = zoo.pdparams_for(str(ref))
    else:
        path = resolve_weights(ref)
    state = paddle.load(str(path))
    if not isinstance(state, dict):
        raise ValueError(f"{path} is not a state dict (got {type(state).__name__})")
    report = load_state(layer, state, strict=strict)
    if not report.loaded:
        raise ValueError(
            f"none of the {len(state)} tensors in {path} match {type(layer).__name__} "
            f"(e.g. file key {next(iter(state), None)!r} vs model key "
            f"{next(iter(layer.state_dict()), None)!r}); is it the weights of another model?"
        )
    logger.info("%s <- %s: %s", type(layer).__name__, path, report.summary())
    return report
