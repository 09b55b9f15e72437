"""Converters to BiSeNetV2: CoinCheung/BiSeNet, mmsegmentation and sssegmentation.

All three PyTorch implementations compute the same network up to a few details, and each
detail is an option of our :class:`~paddle_stdc.models.bisenetv2.BiSeNetV2` (PaddleSeg's
behaviour by default); ``model_kwargs`` of each spec names the options its source needs, so
the converted weights compute what the source computes (tests/test_reference_parity.py checks
it against the original code's outputs). Every source tensor has a home, the training-only
auxiliary heads included (our auxiliary heads are configurable).

Final logits: mmseg and sssegmentation resize them bilinearly (align_corners=False) to the
input size, as we do; CoinCheung's head upsamples by a fixed factor 8 with the same mode, which
is the same resize on the sizes it can run at all (multiples of 32).
"""

from __future__ import annotations

import copy
import re
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

from paddle_stdc.convert.core import CBR, Rule, SourceSpec, rule_cbr

#: Options shared by the three PyTorch implementations (all differ from PaddleSeg's).
_TORCH_COMMON = {
    "symmetric_padding": True,  # nn.Conv2d(padding=1) on stride-2 convs
    "ge_dw_relu": True,  # ReLU after the GE layers' stride-1 depthwise conv
    "ce_conv_bn_relu": True,  # context embedding's 3x3 conv is conv + BN + ReLU
    "bga_relu": True,  # ReLU after the BGA conv
    "bga_pool_counts_padding": True,  # nn.AvgPool2d(count_include_pad=True)
    "head_channels": 1024,  # seg head: 3x3 conv 128 -> 1024, then the classifier
}

#: Auxiliary heads of mmseg's and sssegmentation's configs: two 3x3 convs of these widths.
_FCN_AUX = [[16, 16], [64, 64], [256, 256], [1024, 1024]]

_KWARGS = {
    "coincheung": {
        **_TORCH_COMMON,
        "bga_upsample": "nearest",  # nn.Upsample(scale_factor=4)
        "aux_channels": [[128, 16], [128, 64], [128, 256], [128, 1024]],
        "aux_upsample": 2,  # nn.Upsample(scale_factor=2) between the two convs
    },
    "mmseg": {**_TORCH_COMMON, "aux_channels": _FCN_AUX},
    "sssegmentation": {**_TORCH_COMMON, "aux_channels": _FCN_AUX},
}


def _kwargs(source: str) -> Dict[str, object]:
    """``create_model`` options of ``source``'s BiSeNetV2 (a fresh copy)."""
    return copy.deepcopy(_KWARGS[source])


# GE layers: the source's sub-path within one layer -> (part, conv or bn); our module per part
# in GatherExpandDown (first layer of a stage) and GatherExpand (the others).
_GE_OURS = {
    "conv1": ("branch_1.0", "conv.0"),
    "dw1": ("branch_1.1.depthwise_conv", "conv.1.depthwise_conv"),
    "dw2": ("branch_1.2.depthwise_conv", None),
    "conv2": ("branch_1.3", "conv.2"),
    "sc_dw": ("branch_2.0.depthwise_conv", None),
    "sc_pw": ("branch_2.1", None),
}
GeTable = Dict[str, Tuple[str, str]]


def _ge_table(names: Dict[str, str], conv: str, bn: str) -> GeTable:
    """{source module: part} with conv/bn children ``conv``/``bn`` -> {sub-path: (part, cb)}."""
    table = {}
    for src, part in names.items():
        table[f"{src}.{conv}"] = (part, "conv")
        table[f"{src}.{bn}"] = (part, "bn")
    return table


def _ge_rule(prefix: str, stages: Dict[str, str], table: GeTable) -> Rule:
    """GE layers ``{prefix}.{stage}.{j}.{sub-path}`` -> ``sb.{our stage}.{j}.{module}``."""
    names = "|".join(stages)

    def target(m: re.Match[str]) -> Optional[str]:
        entry = table.get(m.group("rest"))
        if entry is None:
            return None
        part, cb = entry
        ours = _GE_OURS[part][0 if m.group("j") == "0" else 1]
        return ours and f"sb.{stages[m.group('st')]}.{m.group('j')}.{ours}.{CBR[cb]}"

    return Rule(rf"{prefix}\.(?P<st>{names})\.(?P<j>\d)\.(?P<rest>.+)", target)


def _seq(src: str, ours: str, conv: str = "0", bn: str = "1") -> Rule:
    """A conv and its BN at sub-paths ``conv``/``bn`` (regexes, e.g. Sequential indices) of
    ``src`` -> our ConvBN(ReLU) at ``ours`` (template)."""

    def target(m: re.Match[str]) -> str:
        return f"{m.expand(ours)}.{CBR['conv' if m.group('conv') is not None else 'bn']}"

    return Rule(rf"{src}\.(?:(?P<conv>{conv})|(?P<bn>{bn}))", target)


#: Detail branch: (stage, conv within the stage) -> index in our ``db.convs``.
_DETAIL_INDEX = {(s, j): (0, 2, 5)[s] + j for s, n in enumerate((2, 3, 3)) for j in range(n)}


def _detail(fmt: Callable[[re.Match[str]], Tuple[int, int, str]]) -> Callable:
    """Our detail-branch path from a match, given ``fmt(match) -> (stage, conv, cb)``."""

    def target(m: re.Match[str]) -> Optional[str]:
        stage, j, cb = fmt(m)
        idx = _DETAIL_INDEX.get((stage, j))
        return None if idx is None else f"db.convs.{idx}.{CBR[cb]}"

    return target


def _aux_rules(heads: Dict[str, int], parts: Dict[str, Tuple[str, str, str]]) -> List[Rule]:
    """Auxiliary heads: ``heads`` = source head path -> our head number (1..4); ``parts`` = our
    module -> (source sub-path, conv child, BN child); our ``conv_1x1`` is under ``"cls"``."""
    rules = []
    for src, i in heads.items():
        for ours, (sub, conv, bn) in parts.items():
            path = rf"{src}\.{sub}" if sub else src
            if ours == "cls":
                rules.append(Rule(path, f"aux_head{i}.conv_1x1"))
            else:
                rules.append(_seq(path, f"aux_head{i}.{ours}", conv, bn))
    return rules


# --------------------------------------------------------------------------- CoinCheung

_CC_STAGES = {"S3": "stage3", "S4": "stage4", "S5_4": "stage5_4"}
_CC_GE = {
    **_ge_table({"conv1": "conv1"}, "conv", "bn"),
    **_ge_table({"dwconv1": "dw1", "dwconv": "dw1", "dwconv2": "dw2", "conv2": "conv2"}, "0", "1"),
    **_ge_table({"shortcut": "sc_dw"}, "0", "1"),
    **_ge_table({"shortcut": "sc_pw"}, "2", "3"),
}
_CC_AUX = {"aux2": 1, "aux3": 2, "aux4": 3, "aux5_4": 4}
_CC_BACKBONE_ONLY = [
    (r"(bga|head|aux_head\d)\..*", "not in CoinCheung's backbone_v2.pth (detail and semantic "
     "branches only): kept at initialisation"),
]  # fmt: skip


def coincheung(target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    """lib/models/bisenetv2.py ``BiSeNetV2`` (train_amp.py's files, aux heads included) and
    its ImageNet ``backbone_v2.pth`` (``{'detail': ..., 'segment': ...}``)."""
    detail = _detail(lambda m: (int(m.group("s")) - 1, int(m.group("j")), m.group("cb")))
    aux_parts = {
        "conv_3x3.0": ("conv", "conv", "bn"),
        "conv_extra": (r"conv_out\.0\.1", "conv", "bn"),
        "cls": (r"conv_out\.1", "", ""),
    }
    rules = [
        Rule(r"detail\.S(?P<s>[123])\.(?P<j>\d)\.(?P<cb>conv|bn)", detail),
        rule_cbr(r"segment\.S1S2\.conv", "sb.stem.conv"),
        rule_cbr(r"segment\.S1S2\.left\.([01])", r"sb.stem.left.\1"),
        rule_cbr(r"segment\.S1S2\.fuse", "sb.stem.fuse"),
        _ge_rule(r"segment", _CC_STAGES, _CC_GE),
        Rule(r"segment\.S5_5\.bn", "sb.ce.bn"),
        rule_cbr(r"segment\.S5_5\.conv_gap", "sb.ce.conv_1x1"),
        rule_cbr(r"segment\.S5_5\.conv_last", "sb.ce.conv_3x3"),
        _seq(r"bga\.left1", "bga.db_branch_keep.0.depthwise_conv"),
        Rule(r"bga\.left1\.2", "bga.db_branch_keep.1"),
        _seq(r"bga\.left2", "bga.db_branch_down.0"),
        _seq(r"bga\.right1", "bga.sb_branch_up"),
        _seq(r"bga\.right2", "bga.sb_branch_keep.0.depthwise_conv"),
        Rule(r"bga\.right2\.2", "bga.sb_branch_keep.1"),
        _seq(r"bga\.conv", "bga.conv"),
        rule_cbr(r"head\.conv", "head.conv_3x3.0"),
        Rule(r"head\.conv_out\.1", "head.conv_1x1"),
        *_aux_rules(_CC_AUX, aux_parts),
    ]
    backbone_only = not any(k.startswith(("bga.", "head.")) for k in state)
    optional = list(_CC_BACKBONE_ONLY) if backbone_only else []
    return SourceSpec(rules, optional=optional, model_kwargs=_kwargs("coincheung"))


# --------------------------------------------------------------------------- mmsegmentation

_MM_STAGES = {"stage2": "stage3", "stage3": "stage4", "stage4": "stage5_4"}
_MM_GE = _ge_table(
    {
        "conv1": "conv1",
        "dwconv.0": "dw1",
        "dwconv.1": "dw2",
        "conv2.0": "conv2",
        "shortcut.0.depthwise_conv": "sc_dw",
        "shortcut.0.pointwise_conv": "sc_pw",
    },
    "conv",
    "bn",
)


def _dsconv_rules(src: str, ours: str, dw: str, dw_bn: str, pw: str) -> List[Rule]:
    """A depthwise-separable conv whose pointwise conv has no BN (BGA), its parts at sub-paths
    ``dw``/``dw_bn``/``pw`` of ``src`` -> our ``{ours}.0`` (DepthwiseConvBN) and ``{ours}.1``."""
    return [
        _seq(src, f"{ours}.0.depthwise_conv", dw, dw_bn),
        Rule(rf"{src}\.{pw}", f"{ours}.1"),
    ]


_MM_DS = (r"depthwise_conv\.conv", r"depthwise_conv\.bn", r"pointwise_conv\.conv")


def mmseg(target: str) -> SourceSpec:
    """mmseg ``EncoderDecoder`` with the ``BiSeNetV2`` backbone, an ``FCNHead`` and four
    auxiliary ``FCNHead`` (configs/bisenetv2/bisenetv2_fcn_*)."""
    detail = _detail(lambda m: (int(m.group("s")), int(m.group("j")), m.group("cb")))
    b = r"backbone\.semantic"
    bga = r"backbone\.bga"
    aux_parts = {
        "conv_3x3.0": (r"convs\.0", "conv", "bn"),
        "conv_extra": (r"convs\.1", "conv", "bn"),
        "cls": ("conv_seg", "", ""),
    }
    rules = [
        Rule(r"backbone\.detail\.detail_branch\.(?P<s>\d)\.(?P<j>\d)\.(?P<cb>conv|bn)", detail),
        rule_cbr(rf"{b}\.stage1\.conv_first", "sb.stem.conv"),
        rule_cbr(rf"{b}\.stage1\.convs\.([01])", r"sb.stem.left.\1"),
        rule_cbr(rf"{b}\.stage1\.fuse_last", "sb.stem.fuse"),
        _ge_rule(b, _MM_STAGES, _MM_GE),
        Rule(rf"{b}\.stage4_CEBlock\.gap\.1", "sb.ce.bn"),
        rule_cbr(rf"{b}\.stage4_CEBlock\.conv_gap", "sb.ce.conv_1x1"),
        rule_cbr(rf"{b}\.stage4_CEBlock\.conv_last", "sb.ce.conv_3x3"),
        *_dsconv_rules(rf"{bga}\.detail_dwconv\.0", "bga.db_branch_keep", *_MM_DS),
        rule_cbr(rf"{bga}\.detail_down\.0", "bga.db_branch_down.0"),
        rule_cbr(rf"{bga}\.semantic_conv\.0", "bga.sb_branch_up"),
        *_dsconv_rules(rf"{bga}\.semantic_dwconv\.0", "bga.sb_branch_keep", *_MM_DS),
        rule_cbr(rf"{bga}\.conv", "bga.conv"),
        rule_cbr(r"decode_head\.convs\.0", "head.conv_3x3.0"),
        Rule(r"decode_head\.conv_seg", "head.conv_1x1"),
        *_aux_rules({rf"auxiliary_head\.{i}": i + 1 for i in range(4)}, aux_parts),
    ]
    return SourceSpec(rules, model_kwargs=_kwargs("mmseg"))


# --------------------------------------------------------------------------- sssegmentation

_SSS_GE = {
    **_ge_table({"conv1": "conv1", "conv2": "conv2"}, "0", "1"),
    **_ge_table({"dwconv": "dw1"}, "0", "1"),
    **_ge_table({"dwconv": "dw2"}, "2", "3"),
    **_ge_table({"shortcut.0": "sc_dw"}, "depthwise_conv", "depthwise_bn"),
    **_ge_table({"shortcut.0": "sc_pw"}, "pointwise_conv", "pointwise_bn"),
}
_SSS_DS = ("depthwise_conv", "depthwise_bn", "pointwise_conv")


def _sss_detail(m: re.Match[str]) -> Tuple[int, int, str]:
    """Detail stages are flat Sequentials of (conv, BN, ReLU): index k is part k % 3 of conv
    k // 3 (a ReLU, part 2, has no tensors)."""
    j, part = divmod(int(m.group("k")), 3)
    return int(m.group("s")), j, "conv" if part == 0 else "bn"


def sssegmentation(target: str) -> SourceSpec:
    """ssseg ``FCN`` segmentor: ``backbone_net`` (BiSeNetV2; the prefix is stripped before
    the rules), ``decoder`` (one 3x3 conv) and four ``auxiliary_decoder`` (two 3x3 convs)."""
    b, bga = r"semantic", r"bga"
    aux_parts = {
        "conv_3x3.0": ("", "0", "1"),
        "conv_extra": ("", "3", "4"),
        "cls": ("7", "", ""),
    }
    rules = [
        Rule(r"detail\.detail_branch\.(?P<s>\d)\.(?P<k>\d+)", _detail(_sss_detail)),
        _seq(rf"{b}\.stage1\.conv_first", "sb.stem.conv"),
        _seq(rf"{b}\.stage1\.convs", "sb.stem.left.0"),
        _seq(rf"{b}\.stage1\.convs", "sb.stem.left.1", "3", "4"),
        _seq(rf"{b}\.stage1\.fuse_last", "sb.stem.fuse"),
        _ge_rule(b, _MM_STAGES, _SSS_GE),
        Rule(rf"{b}\.stage4_CEBlock\.gap\.1", "sb.ce.bn"),
        _seq(rf"{b}\.stage4_CEBlock\.conv_gap", "sb.ce.conv_1x1"),
        _seq(rf"{b}\.stage4_CEBlock\.conv_last", "sb.ce.conv_3x3"),
        *_dsconv_rules(rf"{bga}\.detail_dwconv\.0", "bga.db_branch_keep", *_SSS_DS),
        _seq(rf"{bga}\.detail_down", "bga.db_branch_down.0"),
        _seq(rf"{bga}\.semantic_conv", "bga.sb_branch_up"),
        *_dsconv_rules(rf"{bga}\.semantic_dwconv\.0", "bga.sb_branch_keep", *_SSS_DS),
        _seq(rf"{bga}\.conv", "bga.conv"),
        _seq(r"decoder", "head.conv_3x3.0"),
        Rule(r"decoder\.4", "head.conv_1x1"),
        *_aux_rules({rf"auxiliary_decoder\.{i}": i + 1 for i in range(4)}, aux_parts),
    ]
    return SourceSpec(rules, model_kwargs=_kwargs("sssegmentation"))


#: source -> our targets this module converts to
SUPPORTED = {
    "coincheung": ("bisenetv2",),
    "mmseg": ("bisenetv2",),
    "sssegmentation": ("bisenetv2",),
}


def spec(source: str, target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    """The conversion of ``source``'s checkpoint ``state`` to our ``target``."""
    if target != "bisenetv2" or source not in SUPPORTED:
        raise KeyError(f"no {source} converter for {target!r} here (only bisenetv2)")
    if source == "coincheung":
        return coincheung(target, state)
    return mmseg(target) if source == "mmseg" else sssegmentation(target)
