"""INT8 post-training quantization of an ONNX export (deploy/python/quantize.py)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import paddle
import pytest
import yaml

import paddle_stdc
from deploy.python.predictor import DeployConfigError, OnnxPredictor, load_deploy_config
from deploy.python.quantize import quantize_int8
from paddle_stdc.export import export_model

from .conftest import ROOT

pytest.importorskip("onnxruntime.quantization")


def _images(synthetic_root):
    return sorted((synthetic_root / "leftImg8bit" / "train").rglob("*.png"))


@pytest.fixture()
def onnx_export(tmp_path):
    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=5)
    export_model(model, tmp_path, [{"type": "Normalize"}], 5, fmt="onnx", output_op="none")
    return tmp_path


@pytest.mark.slow
def test_int8_model_is_written_registered_and_close_to_fp32(onnx_export, synthetic_root):
    out = quantize_int8(onnx_export, _images(synthetic_root), method="minmax")
    assert out.is_file() and out.name == "model_int8.onnx"
    deploy = load_deploy_config(onnx_export)
    assert deploy["onnx_int8"] == "model_int8.onnx"
    assert deploy["int8_calibration"] == {"method": "minmax", "num_images": 4}
    text = out.read_bytes()
    assert b"QuantizeLinear" in text and b"DequantizeLinear" in text  # really a QDQ graph
    fp32, int8 = OnnxPredictor(onnx_export, "fp32"), OnnxPredictor(onnx_export, "int8")
    import cv2

    image = cv2.imread(str(_images(synthetic_root)[0]))
    x = (image[None].transpose(0, 3, 1, 2)[:, ::-1].astype("float32") / 255 - 0.5) / 0.5
    a, b = fp32.run(x), int8.run(x)
    assert a.shape == b.shape == (1, 5, 64, 128)
    assert not np.allclose(a, b)  # quantized for real, so not bit-identical ...
    corr = np.corrcoef(a.ravel(), b.ravel())[0, 1]
    assert corr > 0.95, corr  # ... but the same function up to int8 rounding
    masks = int8.predict([image, image[:48, :80]])
    assert [m.shape for m in masks] == [(64, 128), (48, 80)]
    assert max(int(m.max()) for m in masks) < 5


def test_quantize_errors_name_the_problem(tmp_path, synthetic_root):
    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=3)
    export_model(model, tmp_path, [{"type": "Normalize"}], 3)  # paddle format only
    with pytest.raises(DeployConfigError, match="Deploy.onnx"):
        quantize_int8(tmp_path, _images(synthetic_root))
    with pytest.raises(DeployConfigError, match="quantize.py"):
        OnnxPredictor(tmp_path, "int8")
    doc = yaml.safe_load((tmp_path / "deploy.yaml").read_text())
    doc["Deploy"]["onnx_int8"] = "missing.onnx"
    (tmp_path / "deploy.yaml").write_text(yaml.safe_dump(doc))
    with pytest.raises(DeployConfigError, match="onnx_int8 file missing.onnx"):
        load_deploy_config(tmp_path)


@pytest.mark.slow
def test_bad_calibration_image_is_named(onnx_export, tmp_path):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        quantize_int8(onnx_export, [bad])
    assert "onnx_int8" not in load_deploy_config(onnx_export)  # nothing half-registered


@pytest.mark.slow
def test_quantize_and_infer_cli(onnx_export, synthetic_root, tmp_path):
    calib = synthetic_root / "leftImg8bit" / "train"
    run = [sys.executable, str(ROOT / "deploy/python/quantize.py"), "--export_dir",
           str(onnx_export), "--calib_dir", str(calib), "--num_images", "2"]  # fmt: skip
    subprocess.run(run, check=True, capture_output=True, cwd=ROOT)
    out_dir = tmp_path / "masks"
    infer = [sys.executable, str(ROOT / "deploy/python/infer.py"), "--export_dir",
             str(onnx_export), "--backend", "onnxruntime", "--precision", "int8",
             "--image_path", str(calib), "--save_dir", str(out_dir)]  # fmt: skip
    res = subprocess.run(infer, check=True, capture_output=True, text=True, cwd=ROOT)
    assert "wrote 4 masks" in res.stdout
    assert len(list(out_dir.rglob("*.png"))) >= 4
