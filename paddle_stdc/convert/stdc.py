"""Converters to STDC-Seg and STDCNet: official STDC-Seg (MichaelFan01) and mmsegmentation."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from paddle_stdc.convert.core import CBR, Rule, SourceSpec, rule_cbr

STDC_LAYERS = {"stdc1": (2, 2, 2), "stdc2": (4, 5, 3)}

#: Paths of our STDCSeg that no mmseg checkpoint has: detail heads of strides the mmseg
#: recipe does not train. They only run in training when enabled, so eval is unaffected.
_STDC_DISABLED_DETAIL = [
    (r"conv_out_sp(2|4|16)\..*", "detail head of a stride the source model does not have"),
]


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


#: PyTorch's ``AvgPool2d(3, 2, 1)`` in the stride-2 STDC modules counts the zero padding.
_TORCH_POOL = {"pool_count_pad": True}

#: InPlaceABN's eps (modules/bn.py default, as model_stages.py builds it) = Paddle BN's default.
_ABN_EPS = 1e-5


def fold_inplace_abn(key: str, value: np.ndarray) -> np.ndarray:
    """Official STDC-Seg's heads normalise with InPlaceABN, whose affine step scales by
    ``|weight| + eps`` (its C++ kernel); our plain BN scales by ``weight``, so the BN weight
    becomes ``|weight| + eps``. Conv weights and the other BN tensors are unchanged."""
    path, _, leaf = key.rpartition(".")
    if leaf == "weight" and path.rpartition(".")[2] in ("bn", "bn_atten"):
        return (np.abs(value.astype(np.float64)) + _ABN_EPS).astype(value.dtype)
    return value


def stdc_official(target: str) -> SourceSpec:
    if target in ("STDC1", "STDC2"):
        return SourceSpec(_stdcnet_official_rules("", ""), model_kwargs=dict(_TORCH_POOL))
    heads = {"conv_out": "conv_out", "conv_out16": "conv_out8", "conv_out32": "conv_out16"}
    heads.update({f"conv_out_sp{s}": f"conv_out_sp{s}" for s in (2, 4, 8, 16)})
    head_alt = "|".join(sorted(heads, key=len, reverse=True))

    def head_target(m: re.Match[str]) -> str:
        return heads[m.group("head")]

    rules = _stdcnet_official_rules("cp.backbone.", "cp.backbone.") + [
        rule_cbr(r"cp\.(arm16|arm32)\.conv", r"cp.\1.conv"),
        Rule(r"cp\.(arm16|arm32)\.(conv_atten|bn_atten)", r"cp.\1.\2"),
        rule_cbr(r"cp\.(conv_head32|conv_head16|conv_avg)", r"cp.\1"),
        rule_cbr(r"ffm\.convblk", "ffm.convblk"),
        Rule(r"ffm\.(conv1|conv2)", r"ffm.\1"),
        Rule(
            rf"(?P<head>{head_alt})\.conv\.(?P<cb>conv|bn)",
            lambda m: f"{head_target(m)}.conv.{CBR[m.group('cb')]}",
        ),
        Rule(rf"(?P<head>{head_alt})\.conv_out", lambda m: f"{head_target(m)}.conv_out"),
    ]
    backbone = len(_stdcnet_official_rules("", ""))
    rules = rules[:backbone] + [replace(r, value_fn=fold_inplace_abn) for r in rules[backbone:]]
    notes = [
        "official conv_out16/conv_out32 (heads on the stride-8/16 context) are our "
        "conv_out8/conv_out16, as in PaddleSeg",
        "cp.backbone.conv_last is dropped: unused with use_conv_last=False (train.py default)",
        "InPlaceABN (heads, ARMs, FFM) folded into plain BN: weight -> |weight| + 1e-5",
    ]
    return SourceSpec(rules, notes=notes, model_kwargs=dict(_TORCH_POOL))


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
        [
            Rule(rf"{p}final_conv\.(conv|bn)", None, "ImageNet classifier (conv_last)"),
            Rule(
                r"x(8|16|32)\.0\.\d+\..+",
                None,
                "copy of stages.N that mmseg's stdc2mmseg.py keeps (mmseg ignores it)",
            ),
        ]
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
        return name and f"cp.{name}.conv.{CBR[m.group('cb')]}"

    def arm_attn(m: re.Match[str]) -> Optional[str]:
        name = arm(m)
        return name and f"cp.{name}.{'conv_atten' if m.group('cb') == 'conv' else 'bn_atten'}"

    def conv_head(m: re.Match[str]) -> Optional[str]:
        name = arm(m)
        return name and f"cp.{heads[name]}.{CBR[m.group('cb')]}"

    rules = _mmseg_stdcnet_rules("backbone.backbone.", "cp.backbone.", STDC_LAYERS[variant]) + [
        Rule(r"backbone\.arms\.(?P<i>\d)\.(conv|conv_layer)\.(?P<cb>conv|bn)", arm_conv),
        Rule(
            r"backbone\.arms\.(?P<i>\d)\.(conv_attn|atten_conv_layer\.1)\.(?P<cb>conv|bn)",
            arm_attn,
        ),
        Rule(r"backbone\.convs\.(?P<i>\d)\.(?P<cb>conv|bn)", conv_head),
        rule_cbr(r"backbone\.conv_avg", "cp.conv_avg"),
        rule_cbr(r"backbone\.ffm\.conv0", "ffm.convblk"),
        Rule(r"backbone\.ffm\.(attention\.1|conv1)\.conv", "ffm.conv1"),
        Rule(r"backbone\.ffm\.(attention\.2|conv2)\.conv", "ffm.conv2"),
        rule_cbr(r"decode_head\.convs\.0", "conv_out.conv"),
        Rule(r"decode_head\.conv_seg", "conv_out.conv_out"),
        rule_cbr(r"auxiliary_head\.0\.convs\.0", "conv_out8.conv"),
        Rule(r"auxiliary_head\.0\.conv_seg", "conv_out8.conv_out"),
        rule_cbr(r"auxiliary_head\.1\.convs\.0", "conv_out16.conv"),
        Rule(r"auxiliary_head\.1\.conv_seg", "conv_out16.conv_out"),
        rule_cbr(r"auxiliary_head\.2\.convs\.0", "conv_out_sp8.conv"),
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
    return SourceSpec(
        rules, optional=list(_STDC_DISABLED_DETAIL), notes=notes, model_kwargs=dict(_TORCH_POOL)
    )


def _boundary_logit(value: np.ndarray, want: Tuple[int, ...]) -> np.ndarray:
    """mmseg's STDCHead predicts 2 channels trained with per-channel sigmoid BCE on one-hot
    boundary labels; channel 1 is the boundary logit our 1-channel detail head predicts."""
    if value.shape[0] == 2 and tuple(value[1:].shape) == tuple(want):
        return value[1:]
    return value


def mmseg(target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    if target in ("stdc1_seg", "stdc2_seg"):
        return _mmseg_stdc(target[:5], state)
    rules = _mmseg_stdcnet_rules("", "", STDC_LAYERS[target.lower()])
    return SourceSpec(rules, model_kwargs=dict(_TORCH_POOL))


#: source -> our targets this module converts to
SUPPORTED = {
    "stdc-official": ("stdc1_seg", "stdc2_seg", "STDC1", "STDC2"),
    "mmseg": ("stdc1_seg", "stdc2_seg", "STDC1", "STDC2"),
}


def spec(source: str, target: str, state: Dict[str, np.ndarray]) -> SourceSpec:
    """The conversion of ``source``'s checkpoint ``state`` to our ``target``."""
    return stdc_official(target) if source == "stdc-official" else mmseg(target, state)
