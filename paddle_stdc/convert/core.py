"""The renaming engine shared by the converters, and its strict report.

A converter is a list of :class:`Rule` on the source's *module path* (the key without its last
component): the first rule whose pattern matches the whole path gives our path, or drops the key
with a reason. The last component is mapped the same way for every source: ``weight``/``bias``
stay, BN ``running_mean``/``running_var`` become ``_mean``/``_variance``, and
``num_batches_tracked`` is dropped. Then every tensor is checked against our model's shape.

Biases our layers have and the source's bias-free convs lack are filled with zeros (the same
function; listed in the report). Anything else left over — source keys no rule maps, our keys
nothing fills, shapes that differ — makes the conversion fail in strict mode.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Pattern, Sequence, Tuple, Union

import numpy as np

_LEAVES = {"weight": "weight", "bias": "bias", "running_mean": "_mean", "running_var": "_variance"}

Target = Union[str, Callable[["re.Match[str]"], Optional[str]], None]
Transform = Callable[[np.ndarray, Tuple[int, ...]], np.ndarray]


@dataclass(frozen=True)
class Rule:
    """Map source module paths matching ``pattern`` (whole path) to ``target``.

    ``target`` is a template for :meth:`re.Match.expand` (``\\1`` ...), a callable returning our
    path (or None when it cannot place the key: it stays unmatched), or None to drop the key
    with ``reason``. ``transform(array, our_shape)`` may reshape a tensor whose layout differs.
    ``value_fn(source_key, array)`` rewrites a value whose meaning differs (e.g. InPlaceABN's
    ``|weight| + eps`` scale folded into a plain BN weight).
    """

    pattern: str
    target: Target
    reason: str = ""
    transform: Optional[Transform] = None
    value_fn: Optional[Callable[[str, np.ndarray], np.ndarray]] = None

    @property
    def regex(self) -> Pattern[str]:
        return re.compile(self.pattern)


@dataclass
class ConversionReport:
    """What happened to every source key and every key of our model."""

    source: str
    target: str
    converted: List[Tuple[str, str]] = field(default_factory=list)
    dropped: List[Tuple[str, str]] = field(default_factory=list)
    unmatched: List[str] = field(default_factory=list)
    mismatched: List[Tuple[str, str, Tuple[int, ...], Tuple[int, ...]]] = field(
        default_factory=list
    )
    unfilled: List[str] = field(default_factory=list)
    zero_filled: List[str] = field(default_factory=list)
    kept_init: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: ``create_model`` keyword arguments of the model the converted weights belong to
    model_kwargs: Dict[str, object] = field(default_factory=dict)

    @property
    def model_call(self) -> str:
        args = "".join(f", {k}={v!r}" for k, v in self.model_kwargs.items())
        return f"{self.target}{'(' + args[2:] + ')' if args else ''}"

    @property
    def ok(self) -> bool:
        """True when every source key was placed or deliberately dropped and every key of our
        model was filled with a tensor of the right shape."""
        return not (self.unmatched or self.mismatched or self.unfilled)

    def summary(self, limit: int = 50) -> str:
        lines = [
            f"{self.source} -> {self.model_call}: converted {len(self.converted)}, "
            f"dropped {len(self.dropped)}, zero-filled biases {len(self.zero_filled)}, "
            f"kept at init {len(self.kept_init)}; UNMATCHED {len(self.unmatched)}, "
            f"SHAPE-MISMATCHED {len(self.mismatched)}, UNFILLED {len(self.unfilled)} "
            f"-> {'OK' if self.ok else 'NOT EXACT'}"
        ]
        groups = {}
        for key, reason in self.dropped:
            groups.setdefault(reason, []).append(key)
        for reason, keys in groups.items():
            lines.append(f"  dropped {len(keys)} ({reason}), e.g. {keys[0]}")
        kept = {}
        for key, reason in self.kept_init:
            kept.setdefault(reason, []).append(key)
        for reason, keys in kept.items():
            lines.append(f"  kept at initialisation {len(keys)} ({reason}), e.g. {keys[0]}")
        if self.zero_filled:
            lines.append(
                f"  zero-filled {len(self.zero_filled)} biases of convs the source builds "
                f"without bias, e.g. {self.zero_filled[0]}"
            )
        lines += [f"  unmatched source key: {k}" for k in self.unmatched[:limit]]
        lines += [
            f"  shape mismatch: {s} {list(a)} -> {o} {list(b)}"
            if a != b
            else f"  not kept (other tensors of its layer mismatch): {s} -> {o}"
            for s, o, a, b in self.mismatched[:limit]
        ]
        lines += [f"  unfilled model key: {k}" for k in self.unfilled[:limit]]
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)


class ConversionError(ValueError):
    """A strict conversion left keys unmatched, unfilled or mis-shaped."""

    def __init__(self, report: ConversionReport) -> None:
        super().__init__(report.summary())
        self.report = report


def rename(
    state: Dict[str, np.ndarray], rules: Sequence[Rule]
) -> Tuple[Dict[str, Tuple[str, np.ndarray, Optional[Transform]]], List, List[str]]:
    """Our key -> (source key, tensor, transform); dropped (key, reason); unmatched keys."""
    compiled = [(rule.regex, rule) for rule in rules]
    placed: Dict[str, Tuple[str, np.ndarray, Optional[Transform]]] = {}
    dropped: List[Tuple[str, str]] = []
    unmatched: List[str] = []
    for key, value in state.items():
        path, _, leaf = key.rpartition(".")
        if leaf == "num_batches_tracked":
            dropped.append((key, "BN update counter, not used by Paddle"))
            continue
        if leaf not in _LEAVES or not path:
            # Not a weight/bias/BN statistic (e.g. a constant buffer): only a drop rule on the
            # whole key can account for it.
            drop = next((r for rx, r in compiled if r.target is None and rx.fullmatch(key)), None)
            if drop is not None:
                dropped.append((key, drop.reason))
            else:
                unmatched.append(key)
            continue
        for regex, rule in compiled:
            match = regex.fullmatch(path)
            if match is None:
                continue
            if rule.target is None:
                dropped.append((key, rule.reason))
                break
            ours = rule.target(match) if callable(rule.target) else match.expand(rule.target)
            if ours is None:
                unmatched.append(key)
                break
            ours = f"{ours}.{_LEAVES[leaf]}"
            if ours in placed:
                raise ValueError(f"{key} and {placed[ours][0]} both map to {ours}")
            if rule.value_fn is not None:
                value = rule.value_fn(key, np.asarray(value))
            placed[ours] = (key, value, rule.transform)
            break
        else:
            unmatched.append(key)
    return placed, dropped, unmatched


def assemble(
    placed: Dict[str, Tuple[str, np.ndarray, Optional[Transform]]],
    shapes: Dict[str, Tuple[int, ...]],
    report: ConversionReport,
    optional: Sequence[Tuple[str, str]] = (),
    initial: Optional[Dict[str, np.ndarray]] = None,
) -> Dict[str, np.ndarray]:
    """Check shapes against ``shapes`` (our model), zero-fill conv biases, fill the report.

    ``optional``: (regex on our key, reason) for keys the source model has no counterpart of
    and that do not change eval outputs (e.g. disabled detail heads); they get our model's
    initial values from ``initial`` (if given), so the output loads strictly.
    """
    out: Dict[str, np.ndarray] = {}
    for ours, (src_key, value, transform) in placed.items():
        if ours not in shapes:
            report.unmatched.append(src_key)
            continue
        want = tuple(shapes[ours])
        value = np.asarray(value)
        if transform is not None and tuple(value.shape) != want:
            value = transform(value, want)
        if tuple(value.shape) != want:
            report.mismatched.append((src_key, ours, tuple(value.shape), want))
            continue
        if value.dtype.kind == "f":
            value = value.astype(np.float32)
        out[ours] = value
        report.converted.append((src_key, ours))
    # A layer is converted whole or not at all: a bias that fits next to a weight that does
    # not (e.g. a classifier with a different hidden width) is not kept.
    bad = {ours.rpartition(".")[0] for _, ours, _, _ in report.mismatched}
    for src_key, ours in list(report.converted):
        if ours.rpartition(".")[0] in bad:
            shape = tuple(out.pop(ours).shape)
            report.converted.remove((src_key, ours))
            report.mismatched.append((src_key, ours, shape, shape))
    optional_re = [(re.compile(p), reason) for p, reason in optional]
    from_source = dict(out)
    for ours, shape in shapes.items():
        if ours in out:
            continue
        if ours.endswith(".bias") and len(shape) == 1:
            weight = from_source.get(ours[: -len("bias")] + "weight")
            if weight is not None and weight.ndim == 4 and weight.shape[0] == shape[0]:
                out[ours] = np.zeros(shape, dtype=np.float32)
                report.zero_filled.append(ours)
                continue
        reason = next((r for regex, r in optional_re if regex.fullmatch(ours)), None)
        if reason is not None:
            report.kept_init.append((ours, reason))
            if initial is not None:
                out[ours] = np.asarray(initial[ours], dtype=np.float32)
        else:
            report.unfilled.append(ours)
    return out


#: Source ConvBNReLU children (``conv``/``bn``) and ``nn.Sequential(conv, bn)`` indices -> ours.
CBR = {"conv": "_conv", "bn": "_batch_norm"}
SEQ_CB = {"0": "_conv", "1": "_batch_norm"}


@dataclass
class SourceSpec:
    """How to convert one source's checkpoints to one of our targets."""

    rules: List[Rule]
    optional: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: keyword arguments of ``create_model`` for the model the converted weights belong to
    model_kwargs: Dict[str, object] = field(default_factory=dict)


def rule_cbr(src: str, ours: str) -> Rule:
    """Source conv + BN module at ``src`` (regex; children ``conv``/``bn``) -> our ConvBNReLU at
    ``ours`` (template; children ``_conv``/``_batch_norm``)."""
    pattern = rf"{src}\.(?P<cb>conv|bn)"

    def target(m: re.Match[str]) -> str:
        return f"{m.expand(ours)}.{CBR[m.group('cb')]}"

    return Rule(pattern, target)
