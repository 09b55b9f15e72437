"""Converters to BiSeNetV1 and its ResNet backbones: mmsegmentation and CoinCheung/BiSeNet.

Both sources build their context path on a ResNet with the 7x7 stem (torchvision's ``conv1``,
``bn1``; our ``stem='plain'``); mmsegmentation's ResNetV1c (``stem.*``) maps to our deep stem.
Their FFMs differ only in the attention's activation: mmsegmentation's is conv + BN + ReLU
(``ffm='conv_bn'``), CoinCheung's conv + BN (``ffm='conv_bn_no_relu'``).
"""

from __future__ import annotations

import re
from typing import Dict, List

import numpy as np

from paddle_stdc.convert.core import CBR, Rule, SourceSpec, rule_cbr


def _resnet_rules(prefix: str, ours_prefix: str) -> List[Rule]:
    """A ResNet (deep ``stem.*`` or plain ``conv1``/``bn1`` stem) at ``prefix`` -> ours."""
    p = re.escape(prefix)
    return [
        Rule(rf"{p}(stem\.\d+)", rf"{ours_prefix}\1"),
        Rule(rf"{p}conv1", f"{ours_prefix}stem.0"),
        Rule(rf"{p}bn1", f"{ours_prefix}stem.1"),
        Rule(
            rf"{p}(layer\d\.\d+\.(conv\d|bn\d|downsample\.\d))",
            rf"{ours_prefix}\1",
        ),
        Rule(rf"{p}fc", None, "ImageNet classifier"),
    ]


def _stem(state: Dict[str, np.ndarray], prefix: str) -> str:
    """``"deep"`` when the ResNet at ``prefix`` has a deep stem (``stem.0``; ResNetV1c), else
    ``"plain"`` (the 7x7 ``conv1`` of mmseg's ``ResNet``, which all its BiSeNetV1 configs use)."""
    return "deep" if f"{prefix}stem.0.weight" in state else "plain"


def _mmseg_bisenetv1(state: Dict[str, np.ndarray]) -> SourceSpec:
    cp = r"backbone\.context_path"
    resnet = "backbone.context_path.backbone."
    rules = _resnet_rules(resnet, "cp.backbone.") + [
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
    kwargs: Dict[str, object] = {"ffm": "conv_bn"}
    if _stem(state, resnet) == "plain":  # its configs' ResNet; ResNetV1c has our deep stem
        notes.append("the context path is a ResNet with the 7x7 stem: stem='plain'")
        kwargs = {"stem": "plain", **kwargs}
    return SourceSpec(rules, notes=notes, model_kwargs=kwargs)


def _coincheung_bisenetv1() -> SourceSpec:
    sp = {"conv1": 0, "conv2": 1, "conv3": 2, "conv_out": 3}
    rules = _resnet_rules("cp.resnet.", "cp.backbone.") + [
        rule_cbr(r"cp\.(conv_head32|conv_head16|conv_avg)", r"cp.\1"),
        rule_cbr(r"cp\.(arm16|arm32)\.conv", r"cp.\1.conv"),
        Rule(r"cp\.(arm16|arm32)\.(conv_atten|bn_atten)", r"cp.\1.\2"),
        Rule(
            r"sp\.(?P<n>conv1|conv2|conv3|conv_out)\.(?P<cb>conv|bn)",
            lambda m: f"sp.layers.{sp[m.group('n')]}.{CBR[m.group('cb')]}",
        ),
        rule_cbr(r"ffm\.convblk", "ffm.convblk"),
        Rule(r"ffm\.(?P<cb>conv|bn)", lambda m: f"ffm.conv_atten.{CBR[m.group('cb')]}"),
        rule_cbr(r"conv_out\.conv", "head.conv"),
        Rule(r"conv_out\.conv_out", "head.conv_out"),
        rule_cbr(r"conv_out16\.conv", "aux_head8.conv"),
        Rule(r"conv_out16\.conv_out", "aux_head8.conv_out"),
        rule_cbr(r"conv_out32\.conv", "aux_head16.conv"),
        Rule(r"conv_out32\.conv_out", "aux_head16.conv_out"),
    ]
    notes = [
        "CoinCheung's BiSeNetV1: ResNet-18 with the 7x7 stem (stem='plain') and an FFM attention "
        "of one 1x1 conv + BN without ReLU (ffm='conv_bn_no_relu'); its fixed x2/x8/x16 "
        "upsampling equals our resize to the target size when H and W are multiples of 32"
    ]
    kwargs = {"stem": "plain", "ffm": "conv_bn_no_relu"}
    return SourceSpec(rules, notes=notes, model_kwargs=kwargs)


#: source -> our targets this module converts to
SUPPORTED = {
    "mmseg": (
        "bisenetv1_r18",
        "bisenetv1_r50",
        "ResNet18V1c",
        "ResNet50V1c",
        "ResNet18",
        "ResNet50",
    ),
    "coincheung": ("bisenetv1_r18",),
}


def spec(source: str, target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    """The conversion of ``source``'s checkpoint ``state`` to our ``target``."""
    if source == "coincheung":
        return _coincheung_bisenetv1()
    if target.startswith("ResNet"):
        return SourceSpec(_resnet_rules("", ""))
    return _mmseg_bisenetv1(state)
