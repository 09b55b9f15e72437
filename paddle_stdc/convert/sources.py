"""Which converter handles which source and target, and which target a checkpoint is for.

One module per architecture holds the key maps of every source that publishes it
(:mod:`.stdc`, :mod:`.bisenetv1`, :mod:`.bisenetv2`); each declares ``SUPPORTED`` (source ->
our targets) and ``spec(source, target, state)``. Sources:

- ``stdc-official`` — MichaelFan01/STDC-Seg (ImageNet STDCNet813/1446 and STDC-Seg files),
- ``mmseg`` — mmsegmentation (STDC, STDCNet ImageNet as its stdc2mmseg.py writes them,
  BiSeNetV1, ResNetV1c, BiSeNetV2),
- ``coincheung`` — CoinCheung/BiSeNet (BiSeNetV1, BiSeNetV2 and its ``backbone_v2.pth``),
- ``sssegmentation`` — SegmentationBLWX/sssegmentation (BiSeNetV2).
"""

from __future__ import annotations

import re
from typing import Dict, List, Tuple

import numpy as np

from paddle_stdc.convert import bisenetv1, bisenetv2, stdc
from paddle_stdc.convert.core import SourceSpec

_FAMILIES = (stdc, bisenetv1, bisenetv2)


class UnsupportedConversion(KeyError):
    """No converter maps this source to this target."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


def supported_pairs() -> Dict[str, List[str]]:
    """Source -> the targets (model variants and backbones) it converts to."""
    pairs: Dict[str, List[str]] = {}
    for family in _FAMILIES:
        for source, targets in family.SUPPORTED.items():
            pairs.setdefault(source, []).extend(targets)
    return pairs


def spec_for(source: str, target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    """The key map from ``source``'s checkpoint to our ``target``."""
    for family in _FAMILIES:
        if target in family.SUPPORTED.get(source, ()):
            return family.spec(source, target, state)
    pairs = supported_pairs()
    if source not in pairs:
        raise UnsupportedConversion(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")
    raise UnsupportedConversion(
        f"no {source} converter for {target!r}; {source} converts to: {', '.join(pairs[source])}"
    )


SOURCES: Tuple[str, ...] = ("stdc-official", "mmseg", "sssegmentation", "coincheung")


def guess_target(source: str, state: Dict[str, np.ndarray]) -> str:
    """Our model (variant or backbone name) a checkpoint of ``source`` corresponds to."""
    keys = list(state)

    def has(pattern: str) -> bool:
        regex = re.compile(pattern)
        return any(regex.match(k) for k in keys)

    def stdc_variant(pattern: str) -> str:
        idx = [int(m.group(1)) for k in keys if (m := re.match(pattern, k))]
        if not idx:
            raise ValueError("no STDC blocks found")
        return "stdc1" if max(idx) == 7 else "stdc2" if max(idx) == 13 else "?"

    if source == "stdc-official":
        if has(r"cp\.backbone\.features\."):
            return stdc_variant(r"cp\.backbone\.features\.(\d+)\.") + "_seg"
        return stdc_variant(r"features\.(\d+)\.").upper()
    if source == "mmseg":
        if has(r"backbone\.backbone\.stages\."):
            blocks = {
                m.group(1)
                for k in keys
                if (m := re.match(r"backbone\.backbone\.stages\.2\.(\d+)\.", k))
            }
            return "stdc1_seg" if len(blocks) == 2 else "stdc2_seg"
        if has(r"backbone\.context_path\."):
            deep = has(r"backbone\.context_path\.backbone\.layer1\.0\.conv3\.")
            return "bisenetv1_r50" if deep else "bisenetv1_r18"
        if has(r"stages\.2\."):
            blocks = {m.group(1) for k in keys if (m := re.match(r"stages\.2\.(\d+)\.", k))}
            return "STDC1" if len(blocks) == 2 else "STDC2"
        if has(r"backbone\.detail\.") and has(r"backbone\.semantic\."):
            return "bisenetv2"
        if has(r"stem\.0\."):
            return "ResNet50V1c" if has(r"layer1\.0\.conv3\.") else "ResNet18V1c"
    if source == "coincheung" and has(r"cp\.resnet\."):
        return "bisenetv1_r18"
    if source in ("coincheung", "sssegmentation"):
        return "bisenetv2"
    raise ValueError(f"cannot tell which model this {source} checkpoint is; pass --model")
