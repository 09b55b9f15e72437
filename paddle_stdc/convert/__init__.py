"""Convert checkpoints of the reference implementations to this project's parameter names.

>>> from paddle_stdc.convert import convert_checkpoint
>>> state, report = convert_checkpoint("STDCNet813M_73.91.tar", "stdc-official")  # doctest: +SKIP
>>> print(report.summary())  # doctest: +SKIP

PyTorch files are read by :mod:`paddle_stdc.utils.torch_pickle` (no PyTorch needed, no pickled
code executed). ``tools/convert_weights.py`` is the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Dict, Optional, Tuple, Union

import numpy as np

from paddle_stdc.convert.core import ConversionError, ConversionReport, Rule, assemble, rename
from paddle_stdc.convert.sources import (
    SOURCES,
    UnsupportedConversion,
    guess_target,
    spec_for,
    supported_pairs,
)
from paddle_stdc.registry import get_model_info
from paddle_stdc.utils.torch_pickle import load_torch_state_dict, strip_prefixes

__all__ = [
    "SOURCES",
    "ConversionError",
    "ConversionReport",
    "UnsupportedConversion",
    "supported_pairs",
    "Rule",
    "convert_checkpoint",
    "convert_state",
    "target_shapes",
]

#: Prefixes a source may put before every model key (wrappers of the segmentor).
_SOURCE_PREFIXES = {"sssegmentation": ("backbone_net.",)}


def target_shapes(target: str, num_classes: int = 19, **model_kwargs) -> Dict[str, Tuple[int, ...]]:
    """Names and shapes of our model's state dict (a variant or a backbone name)."""
    return {
        k: tuple(v.shape) for k, v in _target_state(target, num_classes, **model_kwargs).items()
    }


def _target_state(target: str, num_classes: int = 19, **model_kwargs) -> Dict[str, np.ndarray]:
    """Our freshly initialised model's state dict (seed 0) as numpy arrays."""
    import paddle

    from paddle_stdc import models  # noqa: F401  (registers the models)

    info = get_model_info(target)
    if info.kind == "segmentation":
        model_kwargs["num_classes"] = num_classes
    paddle.seed(0)
    layer = info.builder(**model_kwargs)
    return {k: v.numpy() for k, v in layer.state_dict().items()}


def _num_classes(target: str, placed: Dict[str, tuple]) -> int:
    """The number of classes of a checkpoint: rows of its classifier (19 if it has none)."""
    classifier = get_model_info(target).classifier
    entry = placed.get(classifier) if classifier else None
    return int(np.asarray(entry[1]).shape[0]) if entry is not None else 19


def convert_state(
    state: Dict[str, np.ndarray],
    source: str,
    target: Optional[str] = None,
    strict: bool = True,
) -> Tuple[Dict[str, np.ndarray], ConversionReport]:
    """Map a source state dict (numpy arrays) to ours; raise :class:`ConversionError` if
    ``strict`` and anything is unmatched, unfilled or mis-shaped."""
    state = strip_prefixes(dict(state), ("module.",))
    for prefix in _SOURCE_PREFIXES.get(source, ()):  # the backbone's keys inside a segmentor
        state = {k[len(prefix) :] if k.startswith(prefix) else k: v for k, v in state.items()}
    target = target or guess_target(source, state)
    spec = spec_for(source, target, state)
    placed, dropped, unmatched = rename(state, spec.rules)
    report = ConversionReport(
        source=source,
        target=target,
        dropped=dropped,
        unmatched=unmatched,
        notes=list(spec.notes),
        model_kwargs=dict(spec.model_kwargs),
    )
    num_classes = _num_classes(target, placed)
    initial = _target_state(target, num_classes, **spec.model_kwargs)
    shapes = {k: tuple(v.shape) for k, v in initial.items()}
    out = assemble(placed, shapes, report, spec.optional, initial)
    if strict and not report.ok:
        raise ConversionError(report)
    return out, report


def convert_checkpoint(
    path: Union[str, Path], source: str, target: Optional[str] = None, strict: bool = True
) -> Tuple[Dict[str, np.ndarray], ConversionReport]:
    """Read a PyTorch checkpoint safely and convert it (see :func:`convert_state`)."""
    return convert_state(load_torch_state_dict(path), source, target, strict)
