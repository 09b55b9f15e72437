"""Export -> Paddle Inference / ONNX Runtime agreement with dygraph, and deploy.yaml checks."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

import paddle_stdc
from deploy.python.predictor import (
    DeployConfigError,
    Predictor,
    RuntimeOptions,
    load_deploy_config,
)
from paddle_stdc.export import check_onnx, export_model

from .conftest import ROOT

NORMALIZE = [{"type": "Normalize"}]


def _dygraph_argmax(model, x: np.ndarray) -> np.ndarray:
    model.eval()
    with paddle.no_grad():
        return paddle.argmax(model(paddle.to_tensor(x))[0], axis=1).numpy()


@pytest.mark.slow
@pytest.mark.parametrize("name", paddle_stdc.list_models())
def test_paddle_inference_agrees_with_dygraph(name, tmp_path):
    paddle.seed(0)
    model = paddle_stdc.create_model(name, num_classes=7)
    art = export_model(model, tmp_path, NORMALIZE, 7)
    assert art.model_file.name == "model.json" and art.params_file.is_file()
    x = np.random.RandomState(0).uniform(-1, 1, (2, 3, 64, 96)).astype("float32")
    expected = _dygraph_argmax(model, x)
    for mkldnn in (True, False):
        predictor = Predictor(tmp_path, RuntimeOptions(enable_mkldnn=mkldnn))
        got = predictor.run(x)
        assert got.shape == expected.shape and got.dtype == np.int32
        assert (got == expected).mean() >= 0.999, f"mkldnn={mkldnn}"


@pytest.mark.slow
@pytest.mark.parametrize("name", paddle_stdc.list_models())
def test_onnx_agrees_with_paddle(name, tmp_path):
    paddle.seed(0)
    model = paddle_stdc.create_model(name, num_classes=5)
    art = export_model(model, tmp_path, NORMALIZE, 5, fmt="onnx")
    assert art.onnx_file is not None and art.onnx_file.is_file()
    from paddle_stdc.export import ExportModel

    agreement = check_onnx(ExportModel(model), art.onnx_file, [1, 3, 64, 128])
    assert agreement >= 0.999


class _NoOnnxOp(paddle.nn.Layer):
    """Dividing a scalar by a dynamic-batch tensor exports ``full_batch_size_like``, an op
    paddle2onnx 2.x cannot convert; it then aborts its whole process with SIGABRT."""

    def __init__(self):
        super().__init__()
        self.conv = paddle.nn.Conv2D(3, 3, 1)

    def forward(self, x):
        return [9.0 / (self.conv(x).abs() + 1.0)]


def test_failed_onnx_conversion_is_an_error_and_keeps_the_paddle_export(tmp_path):
    with pytest.raises(RuntimeError, match="paddle2onnx could not convert.*usable without ONNX"):
        export_model(_NoOnnxOp(), tmp_path, NORMALIZE, 3, fmt="onnx")
    deploy = load_deploy_config(tmp_path)  # the Paddle export and deploy.yaml survive
    assert deploy["model"] == "model.json" and deploy.get("onnx") is None
    assert not (tmp_path / "model.onnx").exists()


@pytest.mark.slow
def test_onnx_that_disagrees_with_paddle_is_refused(tmp_path, monkeypatch):
    """export_model runs ONNX Runtime against Paddle: a conversion of other weights fails."""
    import paddle_stdc.export as export

    paddle.seed(0)
    other = export_model(paddle_stdc.create_model("stdc1_seg", num_classes=5),
                         tmp_path / "other", NORMALIZE, 5, fmt="onnx")  # fmt: skip

    def wrong_conversion(model_file, params_file, onnx_file):
        shutil.copy(other.onnx_file, onnx_file)
        return onnx_file

    monkeypatch.setattr(export, "_to_onnx", wrong_conversion)
    paddle.seed(1)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=5)
    with pytest.raises(RuntimeError, match="disagrees with Paddle's.*the Paddle export is usable"):
        export_model(model, tmp_path / "new", NORMALIZE, 5, fmt="onnx")
    assert load_deploy_config(tmp_path / "new").get("onnx") is None


@pytest.mark.slow
def test_softmax_output_and_fixed_shape(tmp_path):
    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=3)
    export_model(model, tmp_path, NORMALIZE, 3, input_shape=[1, 3, 64, 64], output_op="softmax")
    deploy = load_deploy_config(tmp_path)
    assert deploy["input_shape"] == [1, 3, 64, 64] and deploy["output_dtype"] == "float32"
    x = np.random.RandomState(1).uniform(-1, 1, (1, 3, 64, 64)).astype("float32")
    prob = Predictor(tmp_path).run(x)
    assert prob.shape == (1, 3, 64, 64)
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, atol=1e-4)


@pytest.mark.slow
def test_deploy_yaml_schema_and_errors(tmp_path):
    paddle.seed(0)
    model = paddle_stdc.create_model("bisenetv2", num_classes=4)
    export_model(model, tmp_path, [{"type": "Padding", "target_size": [96, 64]}, *NORMALIZE], 4,
                 palette=np.arange(12).reshape(4, 3))  # fmt: skip
    doc = yaml.safe_load((tmp_path / "deploy.yaml").read_text())["Deploy"]
    assert doc["model"] == "model.json" and doc["params"] == "model.pdiparams"
    assert doc["transforms"] == [
        {"type": "Padding", "target_size": [96, 64], "im_padding_value": 127.5},
        {"type": "Normalize", "mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    ]
    assert doc["input_shape"] == [-1, 3, -1, -1] and doc["output_op"] == "argmax"
    assert doc["num_classes"] == 4 and doc["palette"] == [
        [0, 1, 2],
        [3, 4, 5],
        [6, 7, 8],
        [9, 10, 11],
    ]

    # Padding is undone: the mask has the image's own size.
    image = np.random.RandomState(2).randint(0, 255, (50, 70, 3)).astype(np.uint8)
    (mask,) = Predictor(tmp_path).predict([image])
    assert mask.shape == (50, 70) and mask.max() < 4

    broken = dict(doc)
    del broken["output_op"]
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump({"Deploy": broken}))
    with pytest.raises(DeployConfigError, match="Deploy.output_op"):
        load_deploy_config(tmp_path)
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump({"Deploy": {**doc, "model": "nope.json"}}))
    with pytest.raises(DeployConfigError, match="nope.json"):
        load_deploy_config(tmp_path)
    with pytest.raises(DeployConfigError, match="not found"):
        load_deploy_config(tmp_path / "missing")


def test_unsupported_val_transform_is_refused(tmp_path):
    model = paddle_stdc.create_model("stdc1_seg", num_classes=3)
    with pytest.raises(ValueError, match="ResizeByShort"):
        export_model(model, tmp_path, [{"type": "ResizeByShort", "short_size": 512}], 3)


@pytest.mark.slow
def test_export_and_infer_cli(tmp_path, synthetic_root):
    config = ROOT / "configs" / "quickstart" / "stdc1_seg_synthetic_512x256.yml"
    export_dir = tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export.py"), "--config", str(config),
         "--save_dir", str(export_dir)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    infer = [sys.executable, str(ROOT / "deploy" / "python" / "infer.py"), "--export_dir",
             str(export_dir)]  # fmt: skip
    images = synthetic_root / "leftImg8bit" / "val"
    proc = subprocess.run(
        [*infer, "--image_path", str(images), "--save_dir", str(tmp_path / "masks")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    masks = sorted((tmp_path / "masks").glob("*.png"))
    assert len(masks) == 2
    first = np.asarray(Image.open(masks[0]))
    assert first.shape == (64, 128) and first.max() < 19  # class ids, palette-coded
    assert len(list((tmp_path / "masks").glob("*_overlay.jpg"))) == 2
    proc = subprocess.run(
        [*infer, "--benchmark", "--shape", "1", "3", "64", "128", "--repeats", "2"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    assert report["latency_ms_median"] > 0 and report["fps"] > 0
    proc = subprocess.run(
        [*infer, "--benchmark", "--shape", "1", "3", "64", "128", "--repeats", "2", "--profile"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600, check=False,  # profile.log
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "onednn_op.fused_conv2d" in proc.stdout  # Paddle's per-operator table
    assert json.loads(proc.stdout.strip().splitlines()[-1])["repeats"] == 2
