"""Parameter names and shapes of the reference implementations' models, for the converter tests.

Each builder walks the *source* model's architecture as its code defines it (module names,
conv widths, which convs have a bias, which norms are BN) and lists ``name -> shape`` the way
``model.state_dict()`` would. They are written from the source code, not derived from our
models or from the converters' rules, so a wrong rule makes a test fail.
"""

from __future__ import annotations

from typing import Dict, Sequence, Tuple

Spec = Dict[str, Tuple[int, ...]]


def bn(spec: Spec, name: str, c: int, counter: bool = True) -> None:
    for leaf in ("weight", "bias", "running_mean", "running_var"):
        spec[f"{name}.{leaf}"] = (c,)
    if counter:
        spec[f"{name}.num_batches_tracked"] = ()


def conv(spec: Spec, name: str, o: int, i: int, k: int, groups: int = 1, bias: bool = False):
    spec[f"{name}.weight"] = (o, i // groups, k, k)
    if bias:
        spec[f"{name}.bias"] = (o,)


# ----------------------------------------------------------------- MichaelFan01/STDC-Seg


def _official_convx(spec: Spec, name: str, i: int, o: int, k: int, counter=True) -> None:
    conv(spec, f"{name}.conv", o, i, k)
    bn(spec, f"{name}.bn", o, counter)


def _official_cat_bottleneck(spec: Spec, name: str, i: int, o: int, stride: int, counter=True):
    if stride == 2:
        conv(spec, f"{name}.avd_layer.0", o // 2, o // 2, 3, groups=o // 2)
        bn(spec, f"{name}.avd_layer.1", o // 2, counter)
    widths = [(i, o // 2, 1), (o // 2, o // 4, 3), (o // 4, o // 8, 3), (o // 8, o // 8, 3)]
    for idx, (ci, co, k) in enumerate(widths):
        _official_convx(spec, f"{name}.conv_list.{idx}", ci, co, k, counter)


def official_stdcnet(layers: Sequence[int], prefix: str = "", counter: bool = True) -> Spec:
    """nets/stdcnet.py STDCNet813 ([2,2,2]) / STDCNet1446 ([4,5,3]) state dict."""
    spec: Spec = {}
    blocks = [("convx", 3, 32, 2), ("convx", 32, 64, 2)]
    base = 64
    for i, n in enumerate(layers):
        for j in range(n):
            if i == 0 and j == 0:
                blocks.append(("cat", base, base * 4, 2))
            elif j == 0:
                blocks.append(("cat", base * 2 ** (i + 1), base * 2 ** (i + 2), 2))
            else:
                blocks.append(("cat", base * 2 ** (i + 2), base * 2 ** (i + 2), 1))
    for idx, (kind, ci, co, s) in enumerate(blocks):
        name = f"{prefix}features.{idx}"
        if kind == "convx":
            _official_convx(spec, name, ci, co, 3, counter)
        else:
            _official_cat_bottleneck(spec, name, ci, co, s, counter)
    # x2 = Sequential(features[:1]) ... : the same modules again under the slices' own keys.
    ends = [1, 2, 2 + layers[0], 2 + layers[0] + layers[1], len(blocks)]
    starts = [0, 1, 2, 2 + layers[0], 2 + layers[0] + layers[1]]
    for scale, a, b in zip((2, 4, 8, 16, 32), starts, ends):
        for idx in range(a, b):
            src = f"{prefix}features.{idx}."
            for key, shape in list(spec.items()):
                if key.startswith(src):
                    spec[f"{prefix}x{scale}.0.{idx}.{key[len(src) :]}"] = shape
    _official_convx(spec, f"{prefix}conv_last", 1024, 1024, 1, counter)
    spec[f"{prefix}fc.weight"] = (1024, 1024)
    bn(spec, f"{prefix}bn", 1024, counter)
    spec[f"{prefix}linear.weight"] = (1000, 1024)
    return spec


def official_stdc_seg(layers: Sequence[int], num_classes: int = 19) -> Spec:
    """models/model_stages.py BiSeNet(backbone='STDCNet813'/'STDCNet1446') state dict.

    Its BNs are InPlaceABNSync (no num_batches_tracked); the backbone's own are nn.BatchNorm2d.
    """
    spec = official_stdcnet(layers, prefix="cp.backbone.")

    def cbr(name, i, o, k):  # ConvBNReLU: bias-free conv + InPlaceABN
        conv(spec, f"{name}.conv", o, i, k)
        bn(spec, f"{name}.bn", o, counter=False)

    for arm, cin in (("arm16", 512), ("arm32", 1024)):
        cbr(f"cp.{arm}.conv", cin, 128, 3)
        conv(spec, f"cp.{arm}.conv_atten", 128, 128, 1)
        bn(spec, f"cp.{arm}.bn_atten", 128, counter=False)
    cbr("cp.conv_head32", 128, 128, 3)
    cbr("cp.conv_head16", 128, 128, 3)
    cbr("cp.conv_avg", 1024, 128, 1)
    cbr("ffm.convblk", 256 + 128, 256, 1)
    conv(spec, "ffm.conv1", 64, 256, 1)
    conv(spec, "ffm.conv2", 256, 64, 1)
    heads = [("conv_out", 256, 256, num_classes), ("conv_out16", 128, 64, num_classes),
             ("conv_out32", 128, 64, num_classes), ("conv_out_sp16", 512, 64, 1),
             ("conv_out_sp8", 256, 64, 1), ("conv_out_sp4", 64, 64, 1),
             ("conv_out_sp2", 32, 64, 1)]  # fmt: skip
    for name, cin, mid, n in heads:
        cbr(f"{name}.conv", cin, mid, 3)
        conv(spec, f"{name}.conv_out", n, mid, 1)
    return spec


# ----------------------------------------------------------------- mmsegmentation


def _mm(spec: Spec, name: str, i: int, o: int, k: int, groups: int = 1) -> None:
    """mmcv ConvModule with a norm: bias-free ``conv`` + ``bn``."""
    conv(spec, f"{name}.conv", o, i, k, groups)
    bn(spec, f"{name}.bn", o)


def mmseg_stdcnet(layers: Sequence[int], prefix: str = "", old_names: bool = False) -> Spec:
    """mmseg STDCNet (channels 32, 64, 256, 512, 1024; 'cat' STDC modules).

    ``old_names``: v0.20's ``avg_pool`` instead of 1.x's ``downsample`` for the strided dwconv.
    """
    spec: Spec = {}
    _mm(spec, f"{prefix}stages.0", 3, 32, 3)
    _mm(spec, f"{prefix}stages.1", 32, 64, 3)
    channels = (64, 256, 512, 1024)
    for s, n in enumerate(layers):
        cin, out = channels[s], channels[s + 1]
        for j in range(n):
            name = f"{prefix}stages.{s + 2}.{j}"
            i = cin if j == 0 else out
            if j == 0:
                _mm(spec, f"{name}.{'avg_pool' if old_names else 'downsample'}", out // 2,
                    out // 2, 3, groups=out // 2)  # fmt: skip
            _mm(spec, f"{name}.layers.0", i, out // 2, 1)
            _mm(spec, f"{name}.layers.1", out // 2, out // 4, 3)
            _mm(spec, f"{name}.layers.2", out // 4, out // 8, 3)
            _mm(spec, f"{name}.layers.3", out // 8, out // 8, 3)
    return spec


def _fcn_head(spec: Spec, name: str, cin: int, ch: int, n: int) -> None:
    _mm(spec, f"{name}.convs.0", cin, ch, 3)
    conv(spec, f"{name}.conv_seg", n, ch, 1, bias=True)


def mmseg_stdc_seg(layers: Sequence[int], num_classes: int = 19) -> Spec:
    """mmseg 1.x EncoderDecoder(STDCContextPathNet(last_in_channels=(1024, 512)), FCNHead,
    aux [FCNHead(in_index=2), FCNHead(in_index=1), STDCHead(num_classes=2)])."""
    spec = mmseg_stdcnet(layers, prefix="backbone.backbone.")
    for i, cin in enumerate((1024, 512)):  # arms.0 on the stride-32 map, arms.1 on stride 16
        _mm(spec, f"backbone.arms.{i}.conv_layer", cin, 128, 3)
        _mm(spec, f"backbone.arms.{i}.atten_conv_layer.1", 128, 128, 1)
        _mm(spec, f"backbone.convs.{i}", 128, 128, 3)
    _mm(spec, "backbone.conv_avg", 1024, 128, 1)
    _mm(spec, "backbone.ffm.conv0", 384, 256, 1)
    conv(spec, "backbone.ffm.attention.1.conv", 64, 256, 1)
    conv(spec, "backbone.ffm.attention.2.conv", 256, 64, 1)
    _fcn_head(spec, "decode_head", 256, 256, num_classes)
    _fcn_head(spec, "auxiliary_head.0", 128, 64, num_classes)
    _fcn_head(spec, "auxiliary_head.1", 128, 64, num_classes)
    _fcn_head(spec, "auxiliary_head.2", 256, 64, 2)
    spec["auxiliary_head.2.fusion_kernel"] = (1, 3, 1, 1)
    return spec


def mmseg_resnet_v1c(depth: int, prefix: str = "", fc: bool = False, deep_stem=True) -> Spec:
    """mmseg ResNetV1c: deep stem (stem.0/1, 3/4, 6/7), layers with downsample.0/1;
    ``deep_stem=False``: mmseg's ``ResNet`` (torchvision's names: 7x7 ``conv1``, ``bn1``)."""
    spec: Spec = {}
    if deep_stem:
        for idx, (i, o) in zip((0, 3, 6), ((3, 32), (32, 32), (32, 64))):
            conv(spec, f"{prefix}stem.{idx}", o, i, 3)
            bn(spec, f"{prefix}stem.{idx + 1}", o)
    else:
        conv(spec, f"{prefix}conv1", 64, 3, 7)
        bn(spec, f"{prefix}bn1", 64)
    counts = {18: (2, 2, 2, 2), 50: (3, 4, 6, 3)}[depth]
    bottleneck = depth >= 50
    cin = 64
    for li, (n, w) in enumerate(zip(counts, (64, 128, 256, 512))):
        out = w * 4 if bottleneck else w
        for j in range(n):
            name = f"{prefix}layer{li + 1}.{j}"
            if bottleneck:
                conv(spec, f"{name}.conv1", w, cin, 1)
                bn(spec, f"{name}.bn1", w)
                conv(spec, f"{name}.conv2", w, w, 3)
                bn(spec, f"{name}.bn2", w)
                conv(spec, f"{name}.conv3", out, w, 1)
                bn(spec, f"{name}.bn3", out)
            else:
                conv(spec, f"{name}.conv1", w, cin, 3)
                bn(spec, f"{name}.bn1", w)
                conv(spec, f"{name}.conv2", w, w, 3)
                bn(spec, f"{name}.bn2", w)
            if j == 0 and (cin != out or li > 0):
                conv(spec, f"{name}.downsample.0", out, cin, 1)
                bn(spec, f"{name}.downsample.1", out)
            cin = out
    if fc:
        spec[f"{prefix}fc.weight"] = (1000, cin)
        spec[f"{prefix}fc.bias"] = (1000,)
    return spec


def mmseg_bisenetv1(depth: int, num_classes: int = 19, deep_stem: bool = False) -> Spec:
    """mmseg BiSeNetV1 (configs/_base_/models/bisenetv1_r18-d32.py; R-50: context
    (512, 1024, 2048), spatial (256, 256, 256, 512), out 1024, aux 512 -> 256). Its configs
    build ``ResNet`` (7x7 stem); ``deep_stem=True`` for a ResNetV1c context path."""
    if depth == 18:
        ctx, spatial, out, aux = (128, 256, 512), (64, 64, 64, 128), 256, (128, 64)
    else:
        ctx, spatial, out, aux = (512, 1024, 2048), (256, 256, 256, 512), 1024, (512, 256)
    spec = mmseg_resnet_v1c(depth, "backbone.context_path.backbone.", deep_stem=deep_stem)
    cp = "backbone.context_path"
    for arm, cin in (("arm16", ctx[1]), ("arm32", ctx[2])):
        _mm(spec, f"{cp}.{arm}.conv_layer", cin, ctx[0], 3)
        _mm(spec, f"{cp}.{arm}.atten_conv_layer.1", ctx[0], ctx[0], 1)
    _mm(spec, f"{cp}.conv_head32", ctx[0], ctx[0], 3)
    _mm(spec, f"{cp}.conv_head16", ctx[0], ctx[0], 3)
    _mm(spec, f"{cp}.gap_conv.1", ctx[2], ctx[0], 1)
    kernels = (7, 3, 3, 1)
    cin = 3
    for n, (c, k) in enumerate(zip(spatial, kernels)):
        _mm(spec, f"backbone.spatial_path.layer{n + 1}", cin, c, k)
        cin = c
    _mm(spec, "backbone.ffm.conv1", ctx[1], out, 1)  # in = context_channels[1]
    _mm(spec, "backbone.ffm.conv_atten.0", out, out, 1)
    _fcn_head(spec, "decode_head", out, out, num_classes)
    _fcn_head(spec, "auxiliary_head.0", ctx[0], aux[1], num_classes)
    _fcn_head(spec, "auxiliary_head.1", ctx[0], aux[1], num_classes)
    return spec


# ----------------------------------------------------------------- CoinCheung/BiSeNet


def coincheung_bisenetv1(num_classes: int = 19) -> Spec:
    """lib/models/bisenetv1.py BiSeNetV1(n_classes, aux_mode='train'): cp.resnet (Resnet18,
    torchvision names), bias-free ConvBNReLU (conv, bn), FFM attention ``conv`` + ``bn``."""
    spec = {
        k.replace("backbone.context_path.backbone.", "cp.resnet."): v
        for k, v in mmseg_resnet_v1c(18, "backbone.context_path.backbone.", deep_stem=False).items()
    }
    for arm, cin in (("arm16", 256), ("arm32", 512)):
        _mm(spec, f"cp.{arm}.conv", cin, 128, 3)
        conv(spec, f"cp.{arm}.conv_atten", 128, 128, 1)
        bn(spec, f"cp.{arm}.bn_atten", 128)
    _mm(spec, "cp.conv_head32", 128, 128, 3)
    _mm(spec, "cp.conv_head16", 128, 128, 3)
    _mm(spec, "cp.conv_avg", 512, 128, 1)
    for name, cin, c, k in (("conv1", 3, 64, 7), ("conv2", 64, 64, 3), ("conv3", 64, 64, 3),
                            ("conv_out", 64, 128, 1)):  # fmt: skip
        _mm(spec, f"sp.{name}", cin, c, k)
    _mm(spec, "ffm.convblk", 256, 256, 1)
    conv(spec, "ffm.conv", 256, 256, 1)
    bn(spec, "ffm.bn", 256)
    for head, cin, mid in (("conv_out", 256, 256), ("conv_out16", 128, 64),
                           ("conv_out32", 128, 64)):  # fmt: skip
        _mm(spec, f"{head}.conv", cin, mid, 3)
        conv(spec, f"{head}.conv_out", num_classes, mid, 1, bias=True)
    return spec


def coincheung_bisenetv2(num_classes: int = 19, backbone_only: bool = False) -> Spec:
    """lib/models/bisenetv2.py BiSeNetV2(n_classes, aux_mode='train'); ``backbone_only``: the
    ``detail.*`` and ``segment.*`` keys of backbone_v2.pth (no BGA, no heads)."""
    spec: Spec = {}

    def cbr(name, i, o, k, bias=False):
        conv(spec, f"{name}.conv", o, i, k, bias=bias)
        bn(spec, f"{name}.bn", o)

    stages = {
        "S1": [(3, 64), (64, 64)],
        "S2": [(64, 64)] * 3,
        "S3": [(64, 128), (128, 128), (128, 128)],
    }
    for s, convs in stages.items():
        for j, (i, o) in enumerate(convs):
            cbr(f"detail.{s}.{j}", i, o, 3)
    cbr("segment.S1S2.conv", 3, 16, 3)
    cbr("segment.S1S2.left.0", 16, 8, 1)
    cbr("segment.S1S2.left.1", 8, 16, 3)
    cbr("segment.S1S2.fuse", 32, 16, 3)
    for stage, (cin, cout, n) in {
        "S3": (16, 32, 2),
        "S4": (32, 64, 2),
        "S5_4": (64, 128, 4),
    }.items():
        for j in range(n):
            name = f"segment.{stage}.{j}"
            i = cin if j == 0 else cout
            mid = i * 6
            cbr(f"{name}.conv1", i, i, 3)
            if j == 0:
                conv(spec, f"{name}.dwconv1.0", mid, i, 3, groups=i)
                bn(spec, f"{name}.dwconv1.1", mid)
                conv(spec, f"{name}.dwconv2.0", mid, mid, 3, groups=mid)
                bn(spec, f"{name}.dwconv2.1", mid)
                conv(spec, f"{name}.shortcut.0", i, i, 3, groups=i)
                bn(spec, f"{name}.shortcut.1", i)
                conv(spec, f"{name}.shortcut.2", cout, i, 1)
                bn(spec, f"{name}.shortcut.3", cout)
            else:
                conv(spec, f"{name}.dwconv.0", mid, i, 3, groups=i)
                bn(spec, f"{name}.dwconv.1", mid)
            conv(spec, f"{name}.conv2.0", cout, mid, 1)
            bn(spec, f"{name}.conv2.1", cout)
    bn(spec, "segment.S5_5.bn", 128)
    cbr("segment.S5_5.conv_gap", 128, 128, 1)
    cbr("segment.S5_5.conv_last", 128, 128, 3)
    if backbone_only:
        return spec
    conv(spec, "bga.left1.0", 128, 128, 3, groups=128)
    bn(spec, "bga.left1.1", 128)
    conv(spec, "bga.left1.2", 128, 128, 1)
    conv(spec, "bga.left2.0", 128, 128, 3)
    bn(spec, "bga.left2.1", 128)
    conv(spec, "bga.right1.0", 128, 128, 3)
    bn(spec, "bga.right1.1", 128)
    conv(spec, "bga.right2.0", 128, 128, 3, groups=128)
    bn(spec, "bga.right2.1", 128)
    conv(spec, "bga.right2.2", 128, 128, 1)
    conv(spec, "bga.conv.0", 128, 128, 3)
    bn(spec, "bga.conv.1", 128)
    # the heads, aux heads included (aux_mode='train')
    cbr("head.conv", 128, 1024, 3)
    conv(spec, "head.conv_out.1", num_classes, 1024, 1, bias=True)
    for name, cin, up in (
        ("aux2", 16, 4),
        ("aux3", 32, 8),
        ("aux4", 64, 16),
        ("aux5_4", 128, 32),
    ):
        cbr(f"{name}.conv", cin, 128, 3)
        cbr(f"{name}.conv_out.0.1", 128, up * up, 3)
        conv(spec, f"{name}.conv_out.1", num_classes, up * up, 1, bias=True)
    return spec


# ----------------------------------------------------------------- sssegmentation


def sssegmentation_bisenetv2(prefix: str = "backbone_net.", heads: bool = True) -> Spec:
    """ssseg/modules/models/backbones/bisenetv2.py BiSeNetV2 inside an FCN segmentor
    (``backbone_net``)."""
    spec: Spec = {}
    p = prefix
    widths = (64, 64, 128)
    cin = 3
    for s, c in enumerate(widths):
        n = 2 if s == 0 else 3
        for j in range(n):
            conv(spec, f"{p}detail.detail_branch.{s}.{3 * j}", c, cin if j == 0 else c, 3)
            bn(spec, f"{p}detail.detail_branch.{s}.{3 * j + 1}", c)
        cin = c
    st = f"{p}semantic.stage1"
    conv(spec, f"{st}.conv_first.0", 16, 3, 3)
    bn(spec, f"{st}.conv_first.1", 16)
    conv(spec, f"{st}.convs.0", 8, 16, 1)
    bn(spec, f"{st}.convs.1", 8)
    conv(spec, f"{st}.convs.3", 16, 8, 3)
    bn(spec, f"{st}.convs.4", 16)
    conv(spec, f"{st}.fuse_last.0", 16, 32, 3)
    bn(spec, f"{st}.fuse_last.1", 16)
    for stage, (ci, co, n) in {
        "stage2": (16, 32, 2),
        "stage3": (32, 64, 2),
        "stage4": (64, 128, 4),
    }.items():
        for j in range(n):
            name = f"{p}semantic.{stage}.{j}"
            i = ci if j == 0 else co
            mid = i * 6
            conv(spec, f"{name}.conv1.0", i, i, 3)
            bn(spec, f"{name}.conv1.1", i)
            conv(spec, f"{name}.dwconv.0", mid, i, 3, groups=i)
            bn(spec, f"{name}.dwconv.1", mid)
            if j == 0:
                conv(spec, f"{name}.dwconv.2", mid, mid, 3, groups=mid)
                bn(spec, f"{name}.dwconv.3", mid)
                conv(spec, f"{name}.shortcut.0.depthwise_conv", i, i, 3, groups=i)
                bn(spec, f"{name}.shortcut.0.depthwise_bn", i)
                conv(spec, f"{name}.shortcut.0.pointwise_conv", co, i, 1)
                bn(spec, f"{name}.shortcut.0.pointwise_bn", co)
            conv(spec, f"{name}.conv2.0", co, mid, 1)
            bn(spec, f"{name}.conv2.1", co)
    ce = f"{p}semantic.stage4_CEBlock"
    bn(spec, f"{ce}.gap.1", 128)
    conv(spec, f"{ce}.conv_gap.0", 128, 128, 1)
    bn(spec, f"{ce}.conv_gap.1", 128)
    conv(spec, f"{ce}.conv_last.0", 128, 128, 3)
    bn(spec, f"{ce}.conv_last.1", 128)
    for name in ("detail_dwconv", "semantic_dwconv"):
        conv(spec, f"{p}bga.{name}.0.depthwise_conv", 128, 128, 3, groups=128)
        bn(spec, f"{p}bga.{name}.0.depthwise_bn", 128)
        conv(spec, f"{p}bga.{name}.0.pointwise_conv", 128, 128, 1)
    conv(spec, f"{p}bga.detail_down.0", 128, 128, 3)
    bn(spec, f"{p}bga.detail_down.1", 128)
    conv(spec, f"{p}bga.semantic_conv.0", 128, 128, 3)
    bn(spec, f"{p}bga.semantic_conv.1", 128)
    conv(spec, f"{p}bga.conv.0", 128, 128, 3)
    bn(spec, f"{p}bga.conv.1", 128)
    if heads:
        # FCN segmentor (fcn.py): decoder = conv, BN, ReLU, Dropout2d, classifier; each
        # auxiliary decoder (auxiliary.py, num_convs=2) = 2 x (conv, BN, ReLU), Dropout2d,
        # classifier; widths of ssseg/configs/_base_/segmentors/bisenetv2.py.
        conv(spec, "decoder.0", 1024, 128, 3)
        bn(spec, "decoder.1", 1024)
        conv(spec, "decoder.4", 19, 1024, 1, bias=True)
        for i, (cin, ch) in enumerate(((16, 16), (32, 64), (64, 256), (128, 1024))):
            conv(spec, f"auxiliary_decoder.{i}.0", ch, cin, 3)
            bn(spec, f"auxiliary_decoder.{i}.1", ch)
            conv(spec, f"auxiliary_decoder.{i}.3", ch, ch, 3)
            bn(spec, f"auxiliary_decoder.{i}.4", ch)
            conv(spec, f"auxiliary_decoder.{i}.7", 19, ch, 1, bias=True)
    return spec


# ----------------------------------------------------------------- mmsegmentation BiSeNetV2


def mmseg_bisenetv2(num_classes: int = 19) -> Spec:
    """mmseg 1.x EncoderDecoder(BiSeNetV2, FCNHead(128 -> 1024, one conv), four auxiliary
    FCNHead(num_convs=2)) of configs/_base_/models/bisenetv2.py. ConvModules with a norm have
    bias-free convs; the BGA's pointwise convs (no norm) keep their bias."""
    spec: Spec = {}
    cin = 3
    for s, c in enumerate((64, 64, 128)):
        for j in range(2 if s == 0 else 3):
            _mm(spec, f"backbone.detail.detail_branch.{s}.{j}", cin if j == 0 else c, c, 3)
        cin = c
    st = "backbone.semantic.stage1"
    _mm(spec, f"{st}.conv_first", 3, 16, 3)
    _mm(spec, f"{st}.convs.0", 16, 8, 1)
    _mm(spec, f"{st}.convs.1", 8, 16, 3)
    _mm(spec, f"{st}.fuse_last", 32, 16, 3)
    stages = {"stage2": (16, 32, 2), "stage3": (32, 64, 2), "stage4": (64, 128, 4)}
    for stage, (ci, co, n) in stages.items():
        for j in range(n):
            name = f"backbone.semantic.{stage}.{j}"
            i = ci if j == 0 else co
            mid = i * 6
            _mm(spec, f"{name}.conv1", i, i, 3)
            _mm(spec, f"{name}.dwconv.0", i, mid, 3, groups=i)
            if j == 0:
                _mm(spec, f"{name}.dwconv.1", mid, mid, 3, groups=mid)
                _mm(spec, f"{name}.shortcut.0.depthwise_conv", i, i, 3, groups=i)
                _mm(spec, f"{name}.shortcut.0.pointwise_conv", i, co, 1)
            _mm(spec, f"{name}.conv2.0", mid, co, 1)
    ce = "backbone.semantic.stage4_CEBlock"
    bn(spec, f"{ce}.gap.1", 128)
    _mm(spec, f"{ce}.conv_gap", 128, 128, 1)
    _mm(spec, f"{ce}.conv_last", 128, 128, 3)
    for name in ("detail_dwconv", "semantic_dwconv"):
        _mm(spec, f"backbone.bga.{name}.0.depthwise_conv", 128, 128, 3, groups=128)
        conv(spec, f"backbone.bga.{name}.0.pointwise_conv.conv", 128, 128, 1, bias=True)
    _mm(spec, "backbone.bga.detail_down.0", 128, 128, 3)
    _mm(spec, "backbone.bga.semantic_conv.0", 128, 128, 3)
    _mm(spec, "backbone.bga.conv", 128, 128, 3)
    _fcn_head(spec, "decode_head", 128, 1024, num_classes)
    for i, (ci, ch) in enumerate(((16, 16), (32, 64), (64, 256), (128, 1024))):
        _fcn_head(spec, f"auxiliary_head.{i}", ci, ch, num_classes)
        _mm(spec, f"auxiliary_head.{i}.convs.1", ch, ch, 3)
    return spec
