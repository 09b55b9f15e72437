"""Converters to BiSeNetV1 and its ResNet backbones: mmsegmentation (and CoinCheung)."""

from __future__ import annotations

import re
from typing import Dict, List

import numpy as np

from paddle_stdc.convert.core import CBR, Rule, SourceSpec, rule_cbr


def _mmseg_resnet_rules(prefix: str, ours_prefix: str) -> List[Rule]:
    p = re.escape(prefix)
    return [
        Rule(rf"{p}(stem\.\d+)", rf"{ours_prefix}\1"),
        Rule(
            rf"{p}(layer\d\.\d+\.(conv\d|bn\d|downsample\.\d))",
            rf"{ours_prefix}\1",
        ),
        Rule(rf"{p}fc", None, "ImageNet classifier"),
    ]


def _mmseg_bisenetv1() -> SourceSpec:
    cp = r"backbone\.context_path"
    rules = _mmseg_resnet_rules("backbone.context_path.backbone.", "cp.backbone.") + [
        rule_cbr(rf"{cp}\.(arm16|arm32)\.conv_layer", r"cp.\1.conv"),
        Rule(rf"{cp}\.(arm16|arm32)\.atten_conv_layer\.1\.conv", r"cp.\1.conv_atten"),
        Rule(rf"{cp}\.(arm16|arm32)\.atten_conv_layer\.1\.bn", r"cp.\1.bn_atten"),
        rule_cbr(rf"{cp}\.(conv_head32|conv_head16)", r"cp.\1"),
        rule_cbr(rf"{cp}\.gap_conv\.1", "cp.conv_avg"),
        Rule(
            r"backbone\.spatial_path\.layer(?P<n>[1-4])\.(?P<cb>conv|bn)",
            lambda m: f"sp.layers.{int(m.group('n')) - 1}.{CBR[m.group('cb')]}",
        ),
        rule_cbr(r"backbone\.ffm\.conv1", "ffm.convblk"),
        rule_cbr(r"backbone\.ffm\.conv_atten\.0", "ffm.conv_atten"),
        rule_cbr(r"decode_head\.convs\.0", "head.conv"),
        Rule(r"decode_head\.conv_seg", "head.conv_out"),
        rule_cbr(r"auxiliary_head\.0\.convs\.0", "aux_head8.conv"),
        Rule(r"auxiliary_head\.0\.conv_seg", "aux_head8.conv_out"),
        rule_cbr(r"auxiliary_head\.1\.convs\.0", "aux_head16.conv"),
        Rule(r"auxiliary_head\.1\.conv_seg", "aux_head16.conv_out"),
    ]
    notes = [
        "mmseg's BiSeNetV1 FFM attention is one 1x1 conv + BN + ReLU (backbone.ffm.conv_atten.0), "
        "not our default two-conv squeeze: the weights are for create_model(..., ffm='conv_bn')"
    ]
    return SourceSpec(rules, notes=notes, model_kwargs={"ffm": "conv_bn"})


#: source -> our targets this module converts to
SUPPORTED = {
    "mmseg": ("bisenetv1_r18", "bisenetv1_r50", "ResNet18V1c", "ResNet50V1c"),
}


def spec(source: str, target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    """The conversion of ``source``'s checkpoint ``state`` to our ``target``."""
    if target.startswith("ResNet"):
        return SourceSpec(_mmseg_resnet_rules("", ""))
    return _mmseg_bisenetv1()
