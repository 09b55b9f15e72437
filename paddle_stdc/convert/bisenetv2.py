"""Converters to BiSeNetV2: CoinCheung/BiSeNet, sssegmentation (and mmsegmentation)."""

from __future__ import annotations

import re
from typing import Callable, Dict, Optional

import numpy as np

from paddle_stdc.convert.core import CBR, SEQ_CB, Rule, SourceSpec, rule_cbr

# --------------------------------------------------------------------------- BiSeNetV2

_PARTIAL_NOTE = (
    "CoinCheung's / mmseg's / sssegmentation's BiSeNetV2 differs from PaddleSeg's layout we "
    "use: ReLU after the stride-1 depthwise conv of GE layers and after the BGA conv, a BN "
    "(+ReLU) after the context-embedding 3x3 conv, a 1024-channel seg head and different "
    "auxiliary heads. Backbone tensors map by name and shape, but the converted network is "
    "not the source network: use it as an initialisation to fine-tune, not to evaluate"
)

#: CoinCheung detail stages S1 (2 convs), S2 (3), S3 (3) -> our db.convs index.
_DETAIL_INDEX = {("1", j): j for j in range(2)}
_DETAIL_INDEX.update({("2", j): 2 + j for j in range(3)})
_DETAIL_INDEX.update({("3", j): 5 + j for j in range(3)})
_STAGES_CC = {"S3": "stage3", "S4": "stage4", "S5_4": "stage5_4"}
_STAGES_SSS = {"stage2": "stage3", "stage3": "stage4", "stage4": "stage5_4"}


def coincheung(target: str) -> SourceSpec:
    if target != "bisenetv2":
        raise KeyError(f"no coincheung converter for {target!r} (only bisenetv2)")

    def detail(m: re.Match[str]) -> str:
        idx = _DETAIL_INDEX[(m.group("s"), int(m.group("j")))]
        return f"db.convs.{idx}.{CBR[m.group('cb')]}"

    def ge(m: re.Match[str]) -> Optional[str]:
        stage, j, part, k = m.group("st"), int(m.group("j")), m.group("part"), m.group("k")
        base = f"sb.{_STAGES_CC[stage]}.{j}"
        seq = {
            # GELayerS2 (j == 0): conv1, dwconv1, dwconv2, conv2, shortcut (dw, bn, pw, bn)
            ("dwconv1", "0"): "branch_1.1.depthwise_conv._conv",
            ("dwconv1", "1"): "branch_1.1.depthwise_conv._batch_norm",
            ("dwconv2", "0"): "branch_1.2.depthwise_conv._conv",
            ("dwconv2", "1"): "branch_1.2.depthwise_conv._batch_norm",
            ("shortcut", "0"): "branch_2.0.depthwise_conv._conv",
            ("shortcut", "1"): "branch_2.0.depthwise_conv._batch_norm",
            ("shortcut", "2"): "branch_2.1._conv",
            ("shortcut", "3"): "branch_2.1._batch_norm",
        }
        if j == 0:
            seq.update(
                {("conv2", "0"): "branch_1.3._conv", ("conv2", "1"): "branch_1.3._batch_norm"}
            )
            conv1 = "branch_1.0"
        else:
            seq.update({
                ("dwconv", "0"): "conv.1.depthwise_conv._conv",
                ("dwconv", "1"): "conv.1.depthwise_conv._batch_norm",
                ("conv2", "0"): "conv.2._conv",
                ("conv2", "1"): "conv.2._batch_norm",
            })  # fmt: skip
            conv1 = "conv.0"
        if part == "conv1":
            return f"{base}.{conv1}.{CBR[k]}"
        name = seq.get((part, k))
        return name and f"{base}.{name}"

    rules = [
        Rule(r"detail\.S(?P<s>[123])\.(?P<j>\d)\.(?P<cb>conv|bn)", detail),
        rule_cbr(r"segment\.S1S2\.conv", "sb.stem.conv"),
        rule_cbr(r"segment\.S1S2\.left\.([01])", r"sb.stem.left.\1"),
        rule_cbr(r"segment\.S1S2\.fuse", "sb.stem.fuse"),
        Rule(r"segment\.(?P<st>S3|S4|S5_4)\.(?P<j>\d)\.(?P<part>conv1)\.(?P<k>conv|bn)", ge),
        Rule(r"segment\.(?P<st>S3|S4|S5_4)\.(?P<j>\d)\.(?P<part>\w+)\.(?P<k>\d)", ge),
        Rule(r"segment\.S5_5\.bn", "sb.ce.bn"),
        rule_cbr(r"segment\.S5_5\.conv_gap", "sb.ce.conv_1x1"),
        Rule(r"segment\.S5_5\.conv_last\.conv", "sb.ce.conv_3x3"),
        Rule(r"bga\.left1\.0", "bga.db_branch_keep.0.depthwise_conv._conv"),
        Rule(r"bga\.left1\.1", "bga.db_branch_keep.0.depthwise_conv._batch_norm"),
        Rule(r"bga\.left1\.2", "bga.db_branch_keep.1"),
        Rule(r"bga\.left2\.([01])", lambda m: f"bga.db_branch_down.0.{SEQ_CB[m.group(1)]}"),
        Rule(r"bga\.right1\.([01])", lambda m: f"bga.sb_branch_up.{SEQ_CB[m.group(1)]}"),
        Rule(r"bga\.right2\.0", "bga.sb_branch_keep.0.depthwise_conv._conv"),
        Rule(r"bga\.right2\.1", "bga.sb_branch_keep.0.depthwise_conv._batch_norm"),
        Rule(r"bga\.right2\.2", "bga.sb_branch_keep.1"),
        Rule(r"bga\.conv\.([01])", lambda m: f"bga.conv.{SEQ_CB[m.group(1)]}"),
        rule_cbr(r"head\.conv", "head.conv_3x3.0"),
        Rule(r"head\.conv_out\.1", "head.conv_1x1"),
    ]
    return SourceSpec(rules, notes=[_PARTIAL_NOTE])


def sssegmentation(target: str) -> SourceSpec:
    if target != "bisenetv2":
        raise KeyError(f"no sssegmentation converter for {target!r} (only bisenetv2)")
    detail_sizes = (2, 3, 3)

    def detail(m: re.Match[str]) -> Optional[str]:
        stage, k = int(m.group("s")), int(m.group("k"))
        conv, part = divmod(k, 3)
        if stage > 2 or conv >= detail_sizes[stage] or part == 2:
            return None
        idx = sum(detail_sizes[:stage]) + conv
        return f"db.convs.{idx}.{'_conv' if part == 0 else '_batch_norm'}"

    def ge(m: re.Match[str]) -> Optional[str]:
        base = f"sb.{_STAGES_SSS[m.group('st')]}.{m.group('j')}"
        part, k = m.group("part"), m.group("k")
        if m.group("j") == "0":
            table = {
                ("conv1", "0"): "branch_1.0._conv",
                ("conv1", "1"): "branch_1.0._batch_norm",
                ("dwconv", "0"): "branch_1.1.depthwise_conv._conv",
                ("dwconv", "1"): "branch_1.1.depthwise_conv._batch_norm",
                ("dwconv", "2"): "branch_1.2.depthwise_conv._conv",
                ("dwconv", "3"): "branch_1.2.depthwise_conv._batch_norm",
                ("conv2", "0"): "branch_1.3._conv",
                ("conv2", "1"): "branch_1.3._batch_norm",
            }
        else:
            table = {
                ("conv1", "0"): "conv.0._conv",
                ("conv1", "1"): "conv.0._batch_norm",
                ("dwconv", "0"): "conv.1.depthwise_conv._conv",
                ("dwconv", "1"): "conv.1.depthwise_conv._batch_norm",
                ("conv2", "0"): "conv.2._conv",
                ("conv2", "1"): "conv.2._batch_norm",
            }
        name = table.get((part, k))
        return name and f"{base}.{name}"

    def shortcut(m: re.Match[str]) -> str:
        base = f"sb.{_STAGES_SSS[m.group('st')]}.0"
        dw = m.group("which") == "depthwise"
        layer = "branch_2.0.depthwise_conv" if dw else "branch_2.1"
        return f"{base}.{layer}.{'_conv' if m.group('k') == 'conv' else '_batch_norm'}"

    def sep(ours: str) -> Callable[[re.Match[str]], Optional[str]]:
        def target(m: re.Match[str]) -> Optional[str]:
            if m.group("which") == "depthwise":
                leaf = "_conv" if m.group("k") == "conv" else "_batch_norm"
                return f"{ours}.0.depthwise_conv.{leaf}"
            return f"{ours}.1" if m.group("k") == "conv" else None

        return target

    stages = r"(?P<st>stage2|stage3|stage4)"
    rules = [
        Rule(r"detail\.detail_branch\.(?P<s>\d)\.(?P<k>\d+)", detail),
        Rule(
            r"semantic\.stage1\.conv_first\.([01])", lambda m: f"sb.stem.conv.{SEQ_CB[m.group(1)]}"
        ),
        Rule(r"semantic\.stage1\.convs\.([01])", lambda m: f"sb.stem.left.0.{SEQ_CB[m.group(1)]}"),
        Rule(
            r"semantic\.stage1\.convs\.([34])",
            lambda m: f"sb.stem.left.1.{'_conv' if m.group(1) == '3' else '_batch_norm'}",
        ),
        Rule(
            r"semantic\.stage1\.fuse_last\.([01])", lambda m: f"sb.stem.fuse.{SEQ_CB[m.group(1)]}"
        ),
        Rule(rf"semantic\.{stages}\.(?P<j>\d)\.(?P<part>conv1|dwconv|conv2)\.(?P<k>\d)", ge),
        Rule(
            rf"semantic\.{stages}\.0\.shortcut\.0\.(?P<which>depthwise|pointwise)_(?P<k>conv|bn)",
            shortcut,
        ),
        Rule(r"semantic\.stage4_CEBlock\.gap\.1", "sb.ce.bn"),
        Rule(
            r"semantic\.stage4_CEBlock\.conv_gap\.([01])",
            lambda m: f"sb.ce.conv_1x1.{SEQ_CB[m.group(1)]}",
        ),
        Rule(r"semantic\.stage4_CEBlock\.conv_last\.0", "sb.ce.conv_3x3"),
        Rule(
            r"bga\.detail_dwconv\.0\.(?P<which>depthwise|pointwise)_(?P<k>conv|bn)",
            sep("bga.db_branch_keep"),
        ),
        Rule(r"bga\.detail_down\.([01])", lambda m: f"bga.db_branch_down.0.{SEQ_CB[m.group(1)]}"),
        Rule(r"bga\.semantic_conv\.([01])", lambda m: f"bga.sb_branch_up.{SEQ_CB[m.group(1)]}"),
        Rule(
            r"bga\.semantic_dwconv\.0\.(?P<which>depthwise|pointwise)_(?P<k>conv|bn)",
            sep("bga.sb_branch_keep"),
        ),
        Rule(r"bga\.conv\.([01])", lambda m: f"bga.conv.{SEQ_CB[m.group(1)]}"),
    ]
    notes = [
        _PARTIAL_NOTE,
        "sssegmentation's heads (decoder / auxiliary_decoder: 1024-channel FCN head, two-conv "
        "auxiliary heads) have no counterpart in our PaddleSeg-layout heads and stay unmatched",
    ]
    return SourceSpec(rules, notes=notes)


#: source -> our targets this module converts to
SUPPORTED = {
    "coincheung": ("bisenetv2",),
    "sssegmentation": ("bisenetv2",),
}


def spec(source: str, target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    """The conversion of ``source``'s checkpoint ``state`` to our ``target``."""
    return coincheung(target) if source == "coincheung" else sssegmentation(target)
