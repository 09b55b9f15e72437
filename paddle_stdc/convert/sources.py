"""Key maps from the reference implementations' checkpoints to this project's models.

Names on the source side are as the source models define them (read from their code):

- ``stdc-official`` — MichaelFan01/STDC-Seg ``nets/stdcnet.py`` (ImageNet STDCNet813/1446:
  ``features.N``, aliases ``x2 … x32`` of the same modules, classifier ``conv_last``/``fc``/
  ``bn``/``linear``) and ``models/model_stages.py`` (``cp.backbone``, ``cp.arm16/32``,
  ``cp.conv_head32/16``, ``cp.conv_avg``, ``ffm``, ``conv_out``, ``conv_out16`` on the stride-8
  context, ``conv_out32`` on the stride-16 context, ``conv_out_sp2/4/8/16``).
- ``mmseg`` — mmsegmentation ``STDCContextPathNet``/``STDCNet`` (``backbone.backbone.stages``,
  ``backbone.arms``, ``backbone.convs``, ``backbone.ffm``, FCN ``decode_head``,
  ``auxiliary_head.{0,1}`` on the stride-8/16 contexts and ``auxiliary_head.2`` = STDCHead),
  ``BiSeNetV1`` (``backbone.context_path``, ``backbone.spatial_path``, ``backbone.ffm``) and the
  ``ResNetV1c`` ImageNet backbones (``stem.N``, ``layerI.J``).
- ``coincheung`` — CoinCheung/BiSeNet ``lib/models/bisenetv2.py`` (``detail.S1…``,
  ``segment.S1S2/S3/S4/S5_4/S5_5``, ``bga``, ``head``, ``aux2 … aux5_4``).
- ``sssegmentation`` — SegmentationBLWX/sssegmentation ``backbones/bisenetv2.py``
  (``detail.detail_branch``, ``semantic.stage1 … stage4_CEBlock``, ``bga``).

Where the source network is built differently from ours the converter says so in the report
rather than guessing (see :data:`STRUCTURAL_NOTES`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import numpy as np

from paddle_stdc.convert.core import Rule

_CBR = {"conv": "_conv", "bn": "_batch_norm"}  # source ConvBNReLU child -> ours (layers.py)
STDC_LAYERS = {"stdc1": (2, 2, 2), "stdc2": (4, 5, 3)}

#: Paths of our STDCSeg that no mmseg checkpoint has: detail heads of strides the mmseg
#: recipe does not train. They only run in training when enabled, so eval is unaffected.
_STDC_DISABLED_DETAIL = [
    (r"conv_out_sp(2|4|16)\..*", "detail head of a stride the source model does not have"),
]


@dataclass
class SourceSpec:
    """How to convert one source's checkpoints to one of our targets."""

    rules: List[Rule]
    optional: List[Tuple[str, str]] = field(default_factory=list)
    notes: List[str] = field(default_factory=list)
    #: keyword arguments of ``create_model`` for the model the converted weights belong to
    model_kwargs: Dict[str, object] = field(default_factory=dict)


def _rule_cbr(src: str, ours: str) -> Rule:
    """Source ConvBNReLU at ``src`` (regex, may use groups) -> ours at ``ours`` (template)."""
    pattern = rf"{src}\.(?P<cb>conv|bn)"

    def target(m: re.Match[str]) -> str:
        return f"{m.expand(ours)}.{_CBR[m.group('cb')]}"

    return Rule(pattern, target)


def _rule_mm(src: str, ours: str) -> Rule:
    """mmcv ``ConvModule`` with a norm at ``src`` (``.conv``/``.bn``) -> our ConvBNReLU."""
    return _rule_cbr(src, ours)


# --------------------------------------------------------------------------- stdc-official


def _stdcnet_official_rules(prefix: str, ours_prefix: str) -> List[Rule]:
    p = re.escape(prefix)
    return [
        Rule(rf"{p}features\.(\d+)\.(.+)", rf"{ours_prefix}features.\1.\2"),
        Rule(
            rf"{p}x(2|4|8|16|32)\.0\.\d+\..+",
            None,
            "alias of the same module under features.N (STDCNet's x2 … x32 views)",
        ),
        Rule(rf"{p}(conv_last\.(conv|bn)|fc|bn|linear)", None, "ImageNet classifier"),
    ]


def stdc_official(target: str) -> SourceSpec:
    if target in ("STDC1", "STDC2"):
        return SourceSpec(_stdcnet_official_rules("", ""))
    heads = {"conv_out": "conv_out", "conv_out16": "conv_out8", "conv_out32": "conv_out16"}
    heads.update({f"conv_out_sp{s}": f"conv_out_sp{s}" for s in (2, 4, 8, 16)})
    head_alt = "|".join(sorted(heads, key=len, reverse=True))

    def head_target(m: re.Match[str]) -> str:
        return heads[m.group("head")]

    rules = _stdcnet_official_rules("cp.backbone.", "cp.backbone.") + [
        _rule_cbr(r"cp\.(arm16|arm32)\.conv", r"cp.\1.conv"),
        Rule(r"cp\.(arm16|arm32)\.(conv_atten|bn_atten)", r"cp.\1.\2"),
        _rule_cbr(r"cp\.(conv_head32|conv_head16|conv_avg)", r"cp.\1"),
        _rule_cbr(r"ffm\.convblk", "ffm.convblk"),
        Rule(r"ffm\.(conv1|conv2)", r"ffm.\1"),
        Rule(
            rf"(?P<head>{head_alt})\.conv\.(?P<cb>conv|bn)",
            lambda m: f"{head_target(m)}.conv.{_CBR[m.group('cb')]}",
        ),
        Rule(rf"(?P<head>{head_alt})\.conv_out", lambda m: f"{head_target(m)}.conv_out"),
    ]
    notes = [
        "official conv_out16/conv_out32 (heads on the stride-8/16 context) are our "
        "conv_out8/conv_out16, as in PaddleSeg",
        "cp.backbone.conv_last is dropped: unused with use_conv_last=False (train.py default)",
    ]
    return SourceSpec(rules, notes=notes)


# --------------------------------------------------------------------------- mmseg


def _mmseg_stdcnet_rules(prefix: str, ours_prefix: str, layers: Sequence[int]) -> List[Rule]:
    p = re.escape(prefix)
    starts = [2 + sum(layers[:i]) for i in range(len(layers))]

    def block(m: re.Match[str]) -> Optional[str]:
        stage, j = int(m.group("s")) - 2, int(m.group("j"))
        if not (0 <= stage < len(layers) and j < layers[stage]):
            return None
        return f"{ours_prefix}features.{starts[stage] + j}"

    def layer_target(m: re.Match[str]) -> Optional[str]:
        base = block(m)
        return base and f"{base}.conv_list.{m.group('l')}.{m.group('cb')}"

    def down_target(m: re.Match[str]) -> Optional[str]:
        base = block(m)
        return base and f"{base}.avd_layer.{0 if m.group('cb') == 'conv' else 1}"

    return [
        Rule(rf"{p}stages\.([01])\.(conv|bn)", rf"{ours_prefix}features.\1.\2"),
        Rule(
            rf"{p}stages\.(?P<s>\d)\.(?P<j>\d+)\.layers\.(?P<l>\d+)\.(?P<cb>conv|bn)", layer_target
        ),
        Rule(
            rf"{p}stages\.(?P<s>\d)\.(?P<j>\d+)\.(downsample|avg_pool)\.(?P<cb>conv|bn)",
            down_target,
        ),
    ] + (
        # In an ImageNet file final_conv is the classifier's conv_last (renamed by mmseg's
        # stdc2mmseg); in a segmentation model it would be used (with_final_conv=True), which
        # ours cannot do, so there it stays unmatched.
        [Rule(rf"{p}final_conv\.(conv|bn)", None, "ImageNet classifier (conv_last)")]
        if not prefix
        else []
    )


def _mmseg_arm_order(state: Dict[str, np.ndarray], prefix: str) -> Dict[str, str]:
    """arms.I -> 'arm16'/'arm32' by the input width of its 3x3 conv (512 vs 1024)."""
    order = {}
    for key, value in state.items():
        m = re.fullmatch(rf"{re.escape(prefix)}arms\.(\d+)\.(conv|conv_layer)\.conv\.weight", key)
        if m:
            order[m.group(1)] = "arm16" if value.shape[1] == 512 else "arm32"
    return order


def _mmseg_stdc(variant: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    arms = _mmseg_arm_order(state, "backbone.")
    heads = {"arm16": "conv_head16", "arm32": "conv_head32"}

    def arm(m: re.Match[str]) -> Optional[str]:
        return arms.get(m.group("i"))

    def arm_conv(m: re.Match[str]) -> Optional[str]:
        name = arm(m)
        return name and f"cp.{name}.conv.{_CBR[m.group('cb')]}"

    def arm_attn(m: re.Match[str]) -> Optional[str]:
        name = arm(m)
        return name and f"cp.{name}.{'conv_atten' if m.group('cb') == 'conv' else 'bn_atten'}"

    def conv_head(m: re.Match[str]) -> Optional[str]:
        name = arm(m)
        return name and f"cp.{heads[name]}.{_CBR[m.group('cb')]}"

    rules = _mmseg_stdcnet_rules("backbone.backbone.", "cp.backbone.", STDC_LAYERS[variant]) + [
        Rule(r"backbone\.arms\.(?P<i>\d)\.(conv|conv_layer)\.(?P<cb>conv|bn)", arm_conv),
        Rule(
            r"backbone\.arms\.(?P<i>\d)\.(conv_attn|atten_conv_layer\.1)\.(?P<cb>conv|bn)",
            arm_attn,
        ),
        Rule(r"backbone\.convs\.(?P<i>\d)\.(?P<cb>conv|bn)", conv_head),
        _rule_mm(r"backbone\.conv_avg", "cp.conv_avg"),
        _rule_mm(r"backbone\.ffm\.conv0", "ffm.convblk"),
        Rule(r"backbone\.ffm\.(attention\.1|conv1)\.conv", "ffm.conv1"),
        Rule(r"backbone\.ffm\.(attention\.2|conv2)\.conv", "ffm.conv2"),
        _rule_mm(r"decode_head\.convs\.0", "conv_out.conv"),
        Rule(r"decode_head\.conv_seg", "conv_out.conv_out"),
        _rule_mm(r"auxiliary_head\.0\.convs\.0", "conv_out8.conv"),
        Rule(r"auxiliary_head\.0\.conv_seg", "conv_out8.conv_out"),
        _rule_mm(r"auxiliary_head\.1\.convs\.0", "conv_out16.conv"),
        Rule(r"auxiliary_head\.1\.conv_seg", "conv_out16.conv_out"),
        _rule_mm(r"auxiliary_head\.2\.convs\.0", "conv_out_sp8.conv"),
        Rule(r"auxiliary_head\.2\.conv_seg", "conv_out_sp8.conv_out", transform=_boundary_logit),
        Rule(
            r"auxiliary_head\.2(\..+)?",
            None,
            "STDCHead constants (Laplacian / fusion kernel) live in our DetailAggregateLoss",
        ),
    ]
    notes = [
        "auxiliary_head.0/1 are the FCN heads on the stride-8/16 context (in_index 2/1 of "
        "mmseg's configs/_base_/models/stdc.py) -> our conv_out8/conv_out16",
        "arms.I / convs.I are placed by the ARM input width (512 = stride 16, 1024 = stride 32), "
        "which differs between mmseg versions",
    ]
    return SourceSpec(rules, optional=list(_STDC_DISABLED_DETAIL), notes=notes)


def _boundary_logit(value: np.ndarray, want: Tuple[int, ...]) -> np.ndarray:
    """mmseg's STDCHead predicts 2 channels trained with per-channel sigmoid BCE on one-hot
    boundary labels; channel 1 is the boundary logit our 1-channel detail head predicts."""
    if value.shape[0] == 2 and tuple(value[1:].shape) == tuple(want):
        return value[1:]
    return value


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
        _rule_mm(rf"{cp}\.(arm16|arm32)\.conv_layer", r"cp.\1.conv"),
        Rule(rf"{cp}\.(arm16|arm32)\.atten_conv_layer\.1\.conv", r"cp.\1.conv_atten"),
        Rule(rf"{cp}\.(arm16|arm32)\.atten_conv_layer\.1\.bn", r"cp.\1.bn_atten"),
        _rule_mm(rf"{cp}\.(conv_head32|conv_head16)", r"cp.\1"),
        _rule_mm(rf"{cp}\.gap_conv\.1", "cp.conv_avg"),
        Rule(
            r"backbone\.spatial_path\.layer(?P<n>[1-4])\.(?P<cb>conv|bn)",
            lambda m: f"sp.layers.{int(m.group('n')) - 1}.{_CBR[m.group('cb')]}",
        ),
        _rule_mm(r"backbone\.ffm\.conv1", "ffm.convblk"),
        _rule_mm(r"backbone\.ffm\.conv_atten\.0", "ffm.conv_atten"),
        _rule_mm(r"decode_head\.convs\.0", "head.conv"),
        Rule(r"decode_head\.conv_seg", "head.conv_out"),
        _rule_mm(r"auxiliary_head\.0\.convs\.0", "aux_head8.conv"),
        Rule(r"auxiliary_head\.0\.conv_seg", "aux_head8.conv_out"),
        _rule_mm(r"auxiliary_head\.1\.convs\.0", "aux_head16.conv"),
        Rule(r"auxiliary_head\.1\.conv_seg", "aux_head16.conv_out"),
    ]
    notes = [STRUCTURAL_NOTES["mmseg:bisenetv1"]]
    return SourceSpec(rules, notes=notes, model_kwargs={"ffm": "conv_bn"})


def mmseg(target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    if target in ("stdc1_seg", "stdc2_seg"):
        return _mmseg_stdc(target[:5], state)
    if target in ("STDC1", "STDC2"):
        return SourceSpec(_mmseg_stdcnet_rules("", "", STDC_LAYERS[target.lower()]))
    if target.startswith("bisenetv1"):
        return _mmseg_bisenetv1()
    if target.startswith("ResNet"):
        return SourceSpec(_mmseg_resnet_rules("", ""))
    raise KeyError(f"no mmseg converter for {target!r}")


# --------------------------------------------------------------------------- BiSeNetV2

#: CoinCheung detail stages S1 (2 convs), S2 (3), S3 (3) -> our db.convs index.
_DETAIL_INDEX = {("1", j): j for j in range(2)}
_DETAIL_INDEX.update({("2", j): 2 + j for j in range(3)})
_DETAIL_INDEX.update({("3", j): 5 + j for j in range(3)})
_STAGES_CC = {"S3": "stage3", "S4": "stage4", "S5_4": "stage5_4"}
_STAGES_SSS = {"stage2": "stage3", "stage3": "stage4", "stage4": "stage5_4"}
_BN = {"0": "_conv", "1": "_batch_norm"}


def coincheung(target: str) -> SourceSpec:
    if target != "bisenetv2":
        raise KeyError(f"no coincheung converter for {target!r} (only bisenetv2)")

    def detail(m: re.Match[str]) -> str:
        idx = _DETAIL_INDEX[(m.group("s"), int(m.group("j")))]
        return f"db.convs.{idx}.{_CBR[m.group('cb')]}"

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
            return f"{base}.{conv1}.{_CBR[k]}"
        name = seq.get((part, k))
        return name and f"{base}.{name}"

    rules = [
        Rule(r"detail\.S(?P<s>[123])\.(?P<j>\d)\.(?P<cb>conv|bn)", detail),
        _rule_cbr(r"segment\.S1S2\.conv", "sb.stem.conv"),
        _rule_cbr(r"segment\.S1S2\.left\.([01])", r"sb.stem.left.\1"),
        _rule_cbr(r"segment\.S1S2\.fuse", "sb.stem.fuse"),
        Rule(r"segment\.(?P<st>S3|S4|S5_4)\.(?P<j>\d)\.(?P<part>conv1)\.(?P<k>conv|bn)", ge),
        Rule(r"segment\.(?P<st>S3|S4|S5_4)\.(?P<j>\d)\.(?P<part>\w+)\.(?P<k>\d)", ge),
        Rule(r"segment\.S5_5\.bn", "sb.ce.bn"),
        _rule_cbr(r"segment\.S5_5\.conv_gap", "sb.ce.conv_1x1"),
        Rule(r"segment\.S5_5\.conv_last\.conv", "sb.ce.conv_3x3"),
        Rule(r"bga\.left1\.0", "bga.db_branch_keep.0.depthwise_conv._conv"),
        Rule(r"bga\.left1\.1", "bga.db_branch_keep.0.depthwise_conv._batch_norm"),
        Rule(r"bga\.left1\.2", "bga.db_branch_keep.1"),
        Rule(r"bga\.left2\.([01])", lambda m: f"bga.db_branch_down.0.{_BN[m.group(1)]}"),
        Rule(r"bga\.right1\.([01])", lambda m: f"bga.sb_branch_up.{_BN[m.group(1)]}"),
        Rule(r"bga\.right2\.0", "bga.sb_branch_keep.0.depthwise_conv._conv"),
        Rule(r"bga\.right2\.1", "bga.sb_branch_keep.0.depthwise_conv._batch_norm"),
        Rule(r"bga\.right2\.2", "bga.sb_branch_keep.1"),
        Rule(r"bga\.conv\.([01])", lambda m: f"bga.conv.{_BN[m.group(1)]}"),
        _rule_cbr(r"head\.conv", "head.conv_3x3.0"),
        Rule(r"head\.conv_out\.1", "head.conv_1x1"),
    ]
    return SourceSpec(rules, notes=[STRUCTURAL_NOTES["bisenetv2"]])


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
        Rule(r"semantic\.stage1\.conv_first\.([01])", lambda m: f"sb.stem.conv.{_BN[m.group(1)]}"),
        Rule(r"semantic\.stage1\.convs\.([01])", lambda m: f"sb.stem.left.0.{_BN[m.group(1)]}"),
        Rule(
            r"semantic\.stage1\.convs\.([34])",
            lambda m: f"sb.stem.left.1.{'_conv' if m.group(1) == '3' else '_batch_norm'}",
        ),
        Rule(r"semantic\.stage1\.fuse_last\.([01])", lambda m: f"sb.stem.fuse.{_BN[m.group(1)]}"),
        Rule(rf"semantic\.{stages}\.(?P<j>\d)\.(?P<part>conv1|dwconv|conv2)\.(?P<k>\d)", ge),
        Rule(
            rf"semantic\.{stages}\.0\.shortcut\.0\.(?P<which>depthwise|pointwise)_(?P<k>conv|bn)",
            shortcut,
        ),
        Rule(r"semantic\.stage4_CEBlock\.gap\.1", "sb.ce.bn"),
        Rule(
            r"semantic\.stage4_CEBlock\.conv_gap\.([01])",
            lambda m: f"sb.ce.conv_1x1.{_BN[m.group(1)]}",
        ),
        Rule(r"semantic\.stage4_CEBlock\.conv_last\.0", "sb.ce.conv_3x3"),
        Rule(
            r"bga\.detail_dwconv\.0\.(?P<which>depthwise|pointwise)_(?P<k>conv|bn)",
            sep("bga.db_branch_keep"),
        ),
        Rule(r"bga\.detail_down\.([01])", lambda m: f"bga.db_branch_down.0.{_BN[m.group(1)]}"),
        Rule(r"bga\.semantic_conv\.([01])", lambda m: f"bga.sb_branch_up.{_BN[m.group(1)]}"),
        Rule(
            r"bga\.semantic_dwconv\.0\.(?P<which>depthwise|pointwise)_(?P<k>conv|bn)",
            sep("bga.sb_branch_keep"),
        ),
        Rule(r"bga\.conv\.([01])", lambda m: f"bga.conv.{_BN[m.group(1)]}"),
    ]
    notes = [
        STRUCTURAL_NOTES["bisenetv2"],
        "sssegmentation's heads (decoder / auxiliary_decoder: 1024-channel FCN head, two-conv "
        "auxiliary heads) have no counterpart in our PaddleSeg-layout heads and stay unmatched",
    ]
    return SourceSpec(rules, notes=notes)


STRUCTURAL_NOTES = {
    "mmseg:bisenetv1": (
        "mmseg's BiSeNetV1 FFM attention is one 1x1 conv + BN + ReLU (backbone.ffm.conv_atten.0), "
        "not our default two-conv squeeze: the weights are for "
        "create_model(..., ffm='conv_bn')"
    ),
    "bisenetv2": (
        "CoinCheung's / mmseg's / sssegmentation's BiSeNetV2 differs from PaddleSeg's layout we "
        "use: ReLU after the stride-1 depthwise conv of GE layers and after the BGA conv, a BN "
        "(+ReLU) after the context-embedding 3x3 conv, a 1024-channel seg head and different "
        "auxiliary heads. Backbone tensors map by name and shape, but the converted network is "
        "not the source network: use it as an initialisation to fine-tune, not to evaluate"
    ),
}


def spec_for(source: str, target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    if source == "stdc-official":
        if target not in ("stdc1_seg", "stdc2_seg", "STDC1", "STDC2"):
            raise KeyError(f"no stdc-official converter for {target!r}")
        return stdc_official(target)
    if source == "mmseg":
        return mmseg(target, state)
    if source == "coincheung":
        return coincheung(target)
    if source == "sssegmentation":
        return sssegmentation(target)
    raise KeyError(f"unknown source {source!r}; choose from {', '.join(SOURCES)}")


SOURCES = ("stdc-official", "mmseg", "sssegmentation", "coincheung")


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
        if has(r"stem\.0\."):
            return "ResNet50V1c" if has(r"layer1\.0\.conv3\.") else "ResNet18V1c"
    if source in ("coincheung", "sssegmentation"):
        return "bisenetv2"
    raise ValueError(f"cannot tell which model this {source} checkpoint is; pass --model")
