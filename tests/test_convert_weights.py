"""Weight conversion from the reference implementations, and the safe PyTorch reader.

Checkpoints are written in each source's layout (tests/source_layouts.py, names and shapes as
the source model defines them) with tests/torch_format.py, which writes what torch.save writes.
"""

from __future__ import annotations

import importlib.util
import os
import pickle
import zipfile

import numpy as np
import paddle
import pytest

import paddle_stdc
from paddle_stdc.convert import ConversionError, convert_checkpoint, target_shapes
from paddle_stdc.models.weights import load_pretrained, load_state
from paddle_stdc.utils.torch_pickle import (
    TorchCheckpointError,
    load_torch_checkpoint,
    load_torch_state_dict,
)

from . import source_layouts as L
from .conftest import ROOT
from .torch_format import random_state, save_torch_legacy, save_torch_zip

# ----------------------------------------------------------------- the reader


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_restricted_unpickler_refuses_a_pickle_that_calls_os_system(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"state_dict": {"w": _Evil(marker)}}, protocol=2)
    assert b"system" in payload
    archive = tmp_path / "evil.pth"
    with zipfile.ZipFile(archive, "w") as zf:  # torch's zip layout, hostile data.pkl
        zf.writestr("archive/data.pkl", payload)
    with pytest.raises(pickle.UnpicklingError, match=r"refusing to load global .*system"):
        load_torch_checkpoint(archive)
    legacy = tmp_path / "evil_legacy.pth"  # and in the pre-1.6 stream, after a valid header
    legacy.write_bytes(
        pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2)
        + pickle.dumps(1001, protocol=2)
        + pickle.dumps({}, protocol=2)
        + payload
    )
    with pytest.raises(pickle.UnpicklingError, match="system"):
        load_torch_checkpoint(legacy)
    assert not marker.exists()


@pytest.mark.parametrize(
    "module,name", [("builtins", "eval"), ("subprocess", "Popen"), ("torch.nn", "Conv2d")]
)
def test_only_tensor_globals_resolve(tmp_path, module, name):
    payload = b"\x80\x02c" + f"{module}\n{name}\n".encode() + b")R."
    archive = tmp_path / "x.pth"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    with pytest.raises(pickle.UnpicklingError, match=f"{module}.{name}"):
        load_torch_checkpoint(archive)


def test_a_pickle_cannot_tamper_with_the_rebuild_functions(tmp_path):
    # GLOBAL torch._utils._rebuild_tensor_v2, then BUILD with state: refused, nothing changed
    payload = b"\x80\x02ctorch._utils\n_rebuild_tensor_v2\n}X\x0c\x00\x00\x00__defaults__(K\x01tsb."
    archive = tmp_path / "tamper.pth"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("archive/data.pkl", payload)
    with pytest.raises(pickle.UnpicklingError, match="refusing to set"):
        load_torch_checkpoint(archive)
    good = save_torch_zip({"w": np.ones((2, 2), np.float32)}, tmp_path / "good.pth")
    np.testing.assert_array_equal(load_torch_checkpoint(good)["w"], np.ones((2, 2)))


@pytest.mark.parametrize("writer", [save_torch_zip, save_torch_legacy], ids=["zip", "legacy"])
def test_reader_rebuilds_tensors_and_unwraps(tmp_path, writer):
    rng = np.random.default_rng(0)
    state = {
        "module.conv.weight": rng.standard_normal((4, 3, 3, 3)).astype(np.float32),
        "module.bn.running_var": rng.uniform(1, 2, 4).astype(np.float32),
        "module.bn.num_batches_tracked": np.array(7, dtype=np.int64),
        "module.half": rng.standard_normal(5).astype(np.float16),
    }
    path = writer({"state_dict": state, "meta": {"epoch": 3, "note": b"x"}}, tmp_path / "c.pth")
    raw = load_torch_checkpoint(path)
    assert raw["meta"] == {"epoch": 3, "note": b"x"}
    loaded = load_torch_state_dict(path)
    assert sorted(loaded) == sorted(k[len("module.") :] for k in state)
    for key, value in state.items():
        got = loaded[key[len("module.") :]]
        assert got.dtype == value.dtype and got.shape == value.shape
        np.testing.assert_array_equal(got, value)


def test_reader_rejects_other_files(tmp_path):
    path = tmp_path / "x.pdparams"
    paddle.save({"w": paddle.ones([2])}, str(path))  # a Paddle file is not a torch checkpoint
    with pytest.raises((TorchCheckpointError, pickle.UnpicklingError)):
        load_torch_checkpoint(path)


# ----------------------------------------------------------------- the converters


def _convert(tmp_path, spec, source, target=None, strict=True, seed=0):
    src = random_state(spec, seed)
    path = save_torch_zip({"state_dict": src, "meta": {"x": 1}}, tmp_path / "src.pth")
    out, report = convert_checkpoint(path, source, target, strict=strict)
    return src, out, report


def _assert_complete(out, report):
    """Every key of our model is filled (or deliberately kept) with the model's shape."""
    shapes = target_shapes(report.target, out_classes(out, report.target))
    assert set(out) == set(shapes)  # kept-at-init keys carry our initial values
    for key, value in out.items():
        assert tuple(value.shape) == shapes[key], key
    placed = {s for s, _ in report.converted} | {s for s, _ in report.dropped}
    assert not report.unmatched and not report.unfilled and not report.mismatched
    return placed


def out_classes(out, target):
    for key in ("conv_out.conv_out.weight", "head.conv_out.weight", "head.conv_1x1.weight"):
        if key in out:
            return out[key].shape[0]
    return 19


def _same(out, ours, src, theirs):
    np.testing.assert_array_equal(out[ours], src[theirs].astype(np.float32))


@pytest.mark.parametrize("variant,layers", [("STDC1", (2, 2, 2)), ("STDC2", (4, 5, 3))])
def test_official_stdc_imagenet_backbone(tmp_path, variant, layers):
    spec = L.official_stdcnet(layers)
    src, out, report = _convert(tmp_path, spec, "stdc-official")
    assert report.target == variant and report.ok
    placed = _assert_complete(out, report)
    assert placed == set(spec)  # every source key is accounted for
    dropped = dict(report.dropped)
    assert (
        "linear.weight" in dropped
        and "fc.weight" in dropped
        and "x8.0.2.conv_list.0.conv.weight" in dropped
    )
    _same(out, "features.2.avd_layer.1._mean", src, "features.2.avd_layer.1.running_mean")
    _same(out, "features.2.avd_layer.1._variance", src, "features.2.avd_layer.1.running_var")
    _same(out, "features.3.conv_list.2.conv.weight", src, "features.3.conv_list.2.conv.weight")
    assert not any(k.endswith(("running_mean", "running_var", "num_batches_tracked")) for k in out)


def test_converted_bn_statistics_drive_the_eval_forward(tmp_path):
    """The first ConvX of STDCNet, computed in numpy from the *source* tensors, equals our
    converted layer in eval mode: running_mean/var landed in _mean/_variance, not swapped."""
    spec = L.official_stdcnet((2, 2, 2))
    src, out, _ = _convert(tmp_path, spec, "stdc-official")
    from paddle_stdc.models.backbones.stdcnet import STDC1

    net = STDC1()
    assert load_state(net, out, strict=True).exact
    net.eval()
    x = np.random.default_rng(1).standard_normal((1, 3, 8, 8)).astype(np.float32)
    with paddle.no_grad():
        got = net.features[0](paddle.to_tensor(x)).numpy()
    w = src["features.0.conv.weight"]  # (32, 3, 3, 3), stride 2, padding 1
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    conv = np.zeros((32, 4, 4), np.float32)
    for i in range(4):
        for j in range(4):
            patch = padded[:, 2 * i : 2 * i + 3, 2 * j : 2 * j + 3]
            conv[:, i, j] = np.tensordot(w, patch, axes=([1, 2, 3], [0, 1, 2]))
    bn = "features.0.bn."
    scale = src[bn + "weight"] / np.sqrt(src[bn + "running_var"] + 1e-5)
    want = (conv - src[bn + "running_mean"][:, None, None]) * scale[:, None, None]
    want = np.maximum(want + src[bn + "bias"][:, None, None], 0)
    np.testing.assert_allclose(got[0], want, rtol=1e-4, atol=1e-5)


def test_official_stdc_seg_checkpoint_runs(tmp_path):
    spec = L.official_stdc_seg((2, 2, 2), num_classes=11)
    src, out, report = _convert(tmp_path, spec, "stdc-official")
    assert report.target == "stdc1_seg" and report.ok
    _assert_complete(out, report)
    # the heads on the stride-8/16 context are named conv_out16/32 officially
    _same(out, "conv_out8.conv._batch_norm._mean", src, "conv_out16.conv.bn.running_mean")
    _same(out, "conv_out16.conv_out.weight", src, "conv_out32.conv_out.weight")
    _same(out, "cp.arm32.bn_atten._variance", src, "cp.arm32.bn_atten.running_var")
    _same(out, "ffm.convblk._conv.weight", src, "ffm.convblk.conv.weight")
    # bias-free source convs get zero biases in our biased layers; nothing else is invented
    assert "conv_out.conv_out.bias" in report.zero_filled
    assert np.all(out["cp.arm16.conv_atten.bias"] == 0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=11)
    assert load_state(model, out, strict=True).exact
    model.eval()
    with paddle.no_grad():
        (logit,) = model(paddle.rand([1, 3, 64, 128]))
    assert logit.shape == [1, 11, 64, 128] and bool(paddle.isfinite(logit).all())


@pytest.mark.parametrize("target,layers", [("stdc1_seg", (2, 2, 2)), ("stdc2_seg", (4, 5, 3))])
def test_mmseg_stdc(tmp_path, target, layers):
    spec = L.mmseg_stdc_seg(layers)
    src, out, report = _convert(tmp_path, spec, "mmseg")
    assert report.target == target and report.ok
    placed = _assert_complete(out, report)
    assert placed == set(spec)
    assert {k.split(".")[0] for k, _ in report.kept_init} == {
        "conv_out_sp2", "conv_out_sp4", "conv_out_sp16"
    }  # fmt: skip
    assert len(report.kept_init) == 24 and not any(
        k.startswith("conv_out_sp") and not k.startswith("conv_out_sp8") for k in report.zero_filled
    )
    # arms.0 reads the 1024-channel stride-32 map in mmseg 1.x; convs.i follows arms.i
    _same(out, "cp.arm32.conv._conv.weight", src, "backbone.arms.0.conv_layer.conv.weight")
    _same(out, "cp.arm16.bn_atten._mean", src, "backbone.arms.1.atten_conv_layer.1.bn.running_mean")
    _same(out, "cp.conv_head32._batch_norm._variance", src, "backbone.convs.0.bn.running_var")
    _same(out, "cp.backbone.features.2.avd_layer.0.weight", src,
          "backbone.backbone.stages.2.0.downsample.conv.weight")  # fmt: skip
    last = 2 + sum(layers) - 1
    _same(out, f"cp.backbone.features.{last}.conv_list.3.bn._mean", src,
          f"backbone.backbone.stages.4.{layers[2] - 1}.layers.3.bn.running_mean")  # fmt: skip
    _same(out, "ffm.conv2.weight", src, "backbone.ffm.attention.2.conv.weight")
    _same(out, "conv_out8.conv_out.weight", src, "auxiliary_head.0.conv_seg.weight")
    _same(out, "conv_out16.conv._conv.weight", src, "auxiliary_head.1.convs.0.conv.weight")
    # the file is complete: disabled detail heads carry our initial values
    assert load_state(paddle_stdc.create_model(target), out, strict=True).exact
    # the 2-class STDCHead keeps its boundary channel
    np.testing.assert_array_equal(
        out["conv_out_sp8.conv_out.weight"], src["auxiliary_head.2.conv_seg.weight"][1:]
    )


def test_mmseg_v020_names_and_arm_order(tmp_path):
    """v0.20 names (avg_pool, conv_attn) and arm order (arms.0 = stride 16) map the same."""
    spec = L.mmseg_stdcnet((2, 2, 2), prefix="backbone.backbone.", old_names=True)
    for i, cin in enumerate((512, 1024)):
        L._mm(spec, f"backbone.arms.{i}.conv", cin, 128, 3)
        L._mm(spec, f"backbone.arms.{i}.conv_attn", 128, 128, 1)
        L._mm(spec, f"backbone.convs.{i}", 128, 128, 3)
    src = random_state(spec)
    path = save_torch_zip(src, tmp_path / "old.pth")
    out, report = convert_checkpoint(path, "mmseg", "stdc1_seg", strict=False)
    assert not report.unmatched and not report.mismatched
    _same(out, "cp.arm16.conv._conv.weight", src, "backbone.arms.0.conv.conv.weight")
    _same(out, "cp.arm32.bn_atten.weight", src, "backbone.arms.1.conv_attn.bn.weight")
    _same(out, "cp.conv_head16._conv.weight", src, "backbone.convs.0.conv.weight")
    _same(out, "cp.backbone.features.4.avd_layer.1._variance", src,
          "backbone.backbone.stages.3.0.avg_pool.bn.running_var")  # fmt: skip


def test_mmseg_final_conv_is_the_classifier_only_in_imagenet_files(tmp_path):
    spec = L.mmseg_stdcnet((2, 2, 2), old_names=True)  # stdc2mmseg output: conv_last renamed
    L._mm(spec, "final_conv", 1024, 1024, 1)
    src, out, report = _convert(tmp_path, spec, "mmseg")
    assert report.target == "STDC1" and report.ok
    assert dict(report.dropped)["final_conv.conv.weight"] == "ImageNet classifier (conv_last)"
    seg = L.mmseg_stdc_seg((2, 2, 2))
    L._mm(seg, "backbone.backbone.final_conv", 1024, 1024, 1)  # with_final_conv=True model
    with pytest.raises(ConversionError, match="backbone.backbone.final_conv.conv.weight"):
        _convert(tmp_path, seg, "mmseg")


@pytest.mark.parametrize("depth", [18, 50])
def test_mmseg_resnet_v1c_imagenet(tmp_path, depth):
    spec = L.mmseg_resnet_v1c(depth, fc=True)
    src, out, report = _convert(tmp_path, spec, "mmseg")
    assert report.target == f"ResNet{depth}V1c" and report.ok
    assert _assert_complete(out, report) == set(spec)
    _same(out, "stem.4._variance", src, "stem.4.running_var")
    _same(out, "layer2.0.downsample.1._mean", src, "layer2.0.downsample.1.running_mean")


@pytest.mark.parametrize("depth", [18, 50])
def test_mmseg_bisenetv1_converts_exactly_for_the_conv_bn_ffm(tmp_path, depth):
    spec = L.mmseg_bisenetv1(depth)
    src, out, report = _convert(tmp_path, spec, "mmseg")
    assert report.target == f"bisenetv1_r{depth}" and report.ok
    assert report.model_kwargs == {"ffm": "conv_bn"} and "ffm='conv_bn'" in report.summary()
    shapes = target_shapes(report.target, 19, ffm="conv_bn")
    assert set(out) == set(shapes) and all(out[k].shape == shapes[k] for k in out)
    assert {s for s, _ in report.converted} | {s for s, _ in report.dropped} == set(spec)
    _same(out, "ffm.conv_atten._batch_norm._variance", src,
          "backbone.ffm.conv_atten.0.bn.running_var")  # fmt: skip
    _same(out, "ffm.conv_atten._conv.weight", src, "backbone.ffm.conv_atten.0.conv.weight")
    _same(out, "cp.backbone.layer4.1.bn2._mean", src,
          "backbone.context_path.backbone.layer4.1.bn2.running_mean")  # fmt: skip
    _same(out, "sp.layers.0._conv.weight", src, "backbone.spatial_path.layer1.conv.weight")
    _same(out, "cp.conv_avg._batch_norm._variance", src,
          "backbone.context_path.gap_conv.1.bn.running_var")  # fmt: skip
    _same(out, "cp.arm16.bn_atten._mean", src,
          "backbone.context_path.arm16.atten_conv_layer.1.bn.running_mean")  # fmt: skip
    _same(out, "aux_head16.conv_out.bias", src, "auxiliary_head.1.conv_seg.bias")
    _same(out, "aux_head8.conv._conv.weight", src, "auxiliary_head.0.convs.0.conv.weight")
    _same(out, "head.conv._batch_norm.weight", src, "decode_head.convs.0.bn.weight")
    # the default (squeeze) FFM cannot take these weights: the conversion says so
    with pytest.raises(ValueError, match="ffm"):
        load_state(paddle_stdc.create_model(report.target), out, strict=True)
    if depth == 18:
        model = paddle_stdc.create_model(report.target, ffm="conv_bn")
        assert load_state(model, out, strict=True).exact
        model.eval()
        with paddle.no_grad():
            (logit,) = model(paddle.rand([1, 3, 64, 64]))
        assert logit.shape == [1, 19, 64, 64] and bool(paddle.isfinite(logit).all())


@pytest.mark.parametrize(
    "source,spec",
    [("coincheung", L.coincheung_bisenetv2()), ("sssegmentation", L.sssegmentation_bisenetv2())],
)
def test_bisenetv2_sources_map_the_branches_and_report_the_rest(tmp_path, source, spec):
    with pytest.raises(ConversionError):
        _convert(tmp_path, spec, source)
    src, out, report = _convert(tmp_path, spec, source, strict=False)
    assert report.target == "bisenetv2" and not report.ok
    shapes = target_shapes("bisenetv2")
    branches = {k for k in shapes if k.startswith(("db.", "sb.", "bga."))}
    assert branches <= set(out)  # every detail / semantic / BGA tensor is filled
    assert all(k.startswith(("head.", "aux_head")) for k in report.unfilled)
    assert any("context-embedding" in n for n in report.notes)
    heads = {k for k in spec if k.startswith(("head.", "aux", "decoder.", "auxiliary_decoder."))}
    assert heads and {k for k in heads if not k.endswith("num_batches_tracked")} <= set(
        report.unmatched
    ) | {s for s, _, _, _ in report.mismatched}
    if source == "coincheung":
        _same(
            out,
            "sb.stage3.0.branch_2.1._batch_norm._mean",
            src,
            "segment.S3.0.shortcut.3.running_mean",
        )
        _same(
            out,
            "sb.stage4.1.conv.1.depthwise_conv._conv.weight",
            src,
            "segment.S4.1.dwconv.0.weight",
        )
        _same(out, "db.convs.7._batch_norm._variance", src, "detail.S3.2.bn.running_var")
        _same(out, "bga.sb_branch_keep.1.weight", src, "bga.right2.2.weight")
    else:
        p = "backbone_net."
        _same(out, "sb.stage3.0.branch_2.1._batch_norm._mean", src,
              f"{p}semantic.stage2.0.shortcut.0.pointwise_bn.running_mean")  # fmt: skip
        _same(out, "sb.stage5_4.0.branch_1.2.depthwise_conv._conv.weight", src,
              f"{p}semantic.stage4.0.dwconv.2.weight")  # fmt: skip
        _same(
            out, "db.convs.4._batch_norm._variance", src, f"{p}detail.detail_branch.1.7.running_var"
        )
        _same(out, "sb.stem.left.1._conv.weight", src, f"{p}semantic.stage1.convs.3.weight")


def test_coincheung_imagenet_backbone_one_state_dict_per_branch(tmp_path):
    """backbone_v2.pth holds {'detail': state_dict, 'segment': state_dict}."""
    spec = L.coincheung_bisenetv2(heads=False)
    src = random_state(spec)
    nested = {}
    for key, value in src.items():
        branch, rest = key.split(".", 1)
        if branch in ("detail", "segment"):
            nested.setdefault(branch, {})[rest] = value
    path = save_torch_zip(nested, tmp_path / "backbone_v2.pth")
    out, report = convert_checkpoint(path, "coincheung", strict=False)
    branch_keys = {k for k in spec if k.startswith(("detail.", "segment."))}
    assert branch_keys <= {s for s, _ in report.converted} | {s for s, _ in report.dropped} | {
        k for k in report.unmatched if k.startswith("segment.S5_5.conv_last.bn")
    }
    _same(out, "sb.stem.fuse._batch_norm._mean", src, "segment.S1S2.fuse.bn.running_mean")
    _same(out, "db.convs.0._conv.weight", src, "detail.S1.0.conv.weight")


# ----------------------------------------------------------------- the command line


def _cli():
    spec = importlib.util.spec_from_file_location(
        "convert_weights", ROOT / "tools" / "convert_weights.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.main


def test_cli_converts_loads_and_refuses_inexact(tmp_path, capsys):
    main = _cli()
    state = {"state_dict": random_state(L.official_stdcnet((2, 2, 2)))}
    src = save_torch_legacy(state, tmp_path / "STDCNet813M_73.91.tar")
    out = tmp_path / "stdc1.pdparams"
    assert main(["--src", "stdc-official", str(src), str(out)]) == 0
    assert "stdc-official -> STDC1" in capsys.readouterr().out
    model = paddle_stdc.create_model("stdc1_seg", num_classes=19, backbone_pretrained=str(out))
    report = load_pretrained(model.cp.backbone, str(out), strict=True)
    assert report.exact

    bad = save_torch_zip(random_state(L.sssegmentation_bisenetv2()), tmp_path / "ssseg.pth")
    target = tmp_path / "bisenetv2.pdparams"
    assert main(["--src", "sssegmentation", str(bad), str(target)]) == 1
    err = capsys.readouterr().err
    assert "NOT EXACT" in err and "unfilled model key: head." in err and not target.exists()
    assert main(["--src", "sssegmentation", str(bad), str(target), "--no-strict"]) == 0
    assert target.exists()
