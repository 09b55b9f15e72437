"""The backend table (deploy/python/backends.py): every backend x precision through infer.py and
serving on a tiny export, one-line errors for what cannot run, and ``auto``'s measured choice."""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from deploy import schema
from deploy.python import backends, infer
from deploy.python.predictor import RuntimeOptions
from deploy.visual import full_palette, overlay

from .conftest import ROOT

NUM_CLASSES = 3
H, W = 64, 128
CPU = [(b, p) for b, d, p in backends.combinations() if d == "cpu"]
#: Share of pixels a precision must agree with Paddle fp32 on (random tiny model, smooth images)
MIN_AGREEMENT = {"fp32": 0.999, "bf16": 0.95, "int8": 0.85}


def _smooth_images(folder: Path, count: int) -> List[Path]:
    """Blurred noise: the tiny model's scores are not all ties (as they are on flat images)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.RandomState(0)
    paths = []
    for i in range(count):
        noise = rng.randint(0, 255, (H, W, 3), np.uint8)
        paths.append(folder / f"im{i}.png")
        cv2.imwrite(str(paths[-1]), cv2.GaussianBlur(noise, (0, 0), 3))
    return paths


@pytest.fixture(scope="session")
def quantized(tmp_path_factory) -> Path:
    """A tiny STDC1 ONNX export (logits out) with both INT8 models; 3 calibration images.
    The OpenVINO one is made by the command line, the ONNX Runtime one by the API."""
    import paddle

    import paddle_stdc
    from deploy.python.quantize import quantize
    from paddle_stdc.export import NORMALIZE_DEFAULT, export_model

    root = tmp_path_factory.mktemp("backends")
    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=NUM_CLASSES)
    export = root / "export"
    export_model(model, export, NORMALIZE_DEFAULT, NUM_CLASSES, fmt="onnx", output_op="none")
    calib = _smooth_images(root / "images", 3)
    cmd = [sys.executable, "deploy/python/quantize.py", "--export_dir", str(export),
           "--calib_dir", str(root / "images"), "--backend", "openvino"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "model_openvino_int8.xml (calibrated on 3 images, NNCF performance)" in proc.stdout
    quantize(export, calib, "onnxruntime")
    return export


@pytest.fixture(autouse=True)
def _own_cache(tmp_path, monkeypatch):
    """``auto`` measures into a cache of this test, never the user's."""
    monkeypatch.setenv(backends.CACHE_ENV, str(tmp_path / "cache"))


def _masks(folder: Path) -> Dict[str, np.ndarray]:
    return {p.name: np.asarray(Image.open(p)) for p in sorted(folder.glob("im?.png"))}


def _agreement(a: Dict[str, np.ndarray], b: Dict[str, np.ndarray]) -> float:
    assert a.keys() == b.keys() and a
    return float(np.mean([(a[k] == b[k]).mean() for k in a]))


# ------------------------------------------------------------------------- the table (fast)


def test_the_table_names_each_backend_and_what_it_reads():
    combos = backends.combinations()
    assert ("openvino", "cpu", "int8") in combos and ("openvino", "cpu", "bf16") in combos
    assert ("onnxruntime", "cpu", "int8") in combos and ("paddle", "gpu", "fp16") in combos
    assert backends.CHOICES == ("auto", "paddle", "onnxruntime", "openvino")
    assert len(CPU) == 7
    for name, device, precision in combos:
        assert device in backends.DEVICES and precision in backends.PRECISIONS
        for key in backends.TABLE[name].files[precision]:  # every file is a deploy.yaml key
            assert key in schema.FILE_KEYS
            assert key in ("model", "params") or key in backends.FILE_HINTS


def _deploy(**keys) -> Dict:
    return {"model": "model.json", "params": "model.pdiparams", "onnx": None, **keys}


@pytest.mark.parametrize(
    "backend,precision,device,deploy,words",
    [
        ("openvino", "int8", "cpu", _deploy(onnx="model.onnx"),
         ["no Deploy.openvino_int8", "quantize.py", "--backend openvino",
          "this export runs here: paddle fp32, paddle bf16, onnxruntime fp32, openvino fp32"]),
        ("onnxruntime", "int8", "cpu", _deploy(onnx="model.onnx"), ["no Deploy.onnx_int8"]),
        ("openvino", "fp32", "cpu", _deploy(), ["no Deploy.onnx", "--format onnx"]),
        ("onnxruntime", "bf16", "cpu", _deploy(),
         ["does not run --precision bf16", "--backend paddle or openvino"]),
        ("openvino", "fp16", "cpu", _deploy(), ["openvino runs cpu: fp32 bf16 int8"]),
        ("openvino", "fp32", "gpu", _deploy(), ["runs on cpu, not --device gpu"]),
        ("tensorrt", "fp32", "cpu", _deploy(), ["choose from auto, paddle, onnxruntime"]),
    ],
)  # fmt: skip
def test_unavailable_combinations_are_one_line_errors(backend, precision, device, deploy, words):
    with pytest.raises(backends.BackendError) as err:
        backends.check(backend, precision, device, deploy, Path("exp"))
    message = str(err.value)
    assert "\n" not in message and all(w in message for w in words), message


def test_a_missing_package_is_named_with_what_is_installed(monkeypatch):
    real = backends.importlib.util.find_spec
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name: None if name == "openvino" else real(name))  # fmt: skip
    with pytest.raises(backends.BackendError) as err:
        backends.check("openvino", "fp32", "cpu")
    assert str(err.value) == (
        "--backend openvino needs the openvino package, which is not installed (installed "
        'backends: paddle, onnxruntime); pip install -e ".[openvino]"'
    )
    assert backends.candidates(_deploy(onnx="model.onnx"), "cpu", "fp32") == [
        "paddle", "onnxruntime"]  # fmt: skip


def test_paddleseg_precisions_fall_back_only_for_paddle():
    assert backends.fallback("paddle", "cpu", "fp16")[0] == "fp32"
    assert "TensorRT" in backends.fallback("paddle", "cpu", "int8")[1]
    assert backends.fallback("paddle", "gpu", "bf16")[0] == "fp32"
    assert backends.fallback("openvino", "cpu", "fp16") == ("fp16", None)  # then: an error
    assert backends.fallback("paddle", "cpu", "bf16") == ("bf16", None)


def test_probe_shape_takes_fixed_dims_then_transforms_then_the_hint():
    dyn = {"input_shape": [-1, 3, -1, -1], "transforms": [{"type": "Normalize"}]}
    assert backends.probe_shape(dyn) == [1, 3, 512, 1024]
    assert backends.probe_shape(dyn, [2, 3, 48, 80]) == [2, 3, 48, 80]
    resize = {**dyn, "transforms": [{"type": "Resize", "target_size": [256, 128]}]}
    assert backends.probe_shape(resize, [1, 3, 48, 80]) == [1, 3, 128, 256]
    fixed = {**dyn, "input_shape": [1, 3, 32, 64]}
    assert backends.probe_shape(fixed, [4, 3, 48, 80]) == [1, 3, 32, 64]


class _Timed:
    """A predictor stand-in whose ``run`` takes ``ms``; counts how often it was built."""

    built: List[str] = []

    def __init__(self, name: str, ms: float) -> None:
        self.backend, self.ms, self.precision = name, ms, "fp32"
        _Timed.built.append(name)

    def run(self, batch):
        time.sleep(self.ms / 1000)
        return batch


def test_auto_measures_once_picks_the_fastest_and_caches(tmp_path, monkeypatch):
    export = tmp_path / "export"
    export.mkdir()
    for name in ("model.json", "model.pdiparams", "model.onnx"):
        (export / name).write_text("x")
    deploy = schema.build_deploy(transforms=schema.deploy_transforms([{"type": "Normalize"}]),
                                 input_shape=[1, 3, 8, 8],
                                 output_op="argmax", num_classes=2)  # fmt: skip
    schema.write_deploy(export, {**deploy, "onnx": "model.onnx"})
    speeds = {"paddle": 30.0, "onnxruntime": 2.0, "openvino": 12.0}
    for name, ms in speeds.items():
        make = functools.partial(lambda n, t, _dir, _opts: _Timed(n, t), name, ms)
        fake = dataclasses.replace(backends.TABLE[name], make=make)
        monkeypatch.setitem(backends.TABLE, name, fake)
    logs: List[str] = []
    _Timed.built = []
    first = backends.create_predictor(export, "auto", RuntimeOptions(), log=logs.append)
    assert first.backend == "onnxruntime" and sorted(_Timed.built) == sorted(speeds)
    assert "auto backend: onnxruntime (fp32, measured: paddle " in logs[-1]
    assert "at 1x3x8x8, 2 threads" in logs[-1]
    entry = next(iter(json.loads(backends.cache_file().read_text()).values()))
    assert entry["backend"] == "onnxruntime" and entry["ms"]["paddle"] > entry["ms"]["onnxruntime"]
    _Timed.built = []
    again = backends.create_predictor(export, "auto", RuntimeOptions(), log=logs.append)
    assert again.backend == "onnxruntime" and _Timed.built == ["onnxruntime"]  # no re-measuring
    assert "cached in" in logs[-1]
    backends.create_predictor(export, "auto", RuntimeOptions(cpu_threads=1), log=logs.append)
    assert "measured" in logs[-1]  # other threads: another entry
    _Timed.built = []
    bf16 = backends.create_predictor(export, "auto", RuntimeOptions(precision="bf16"),
                                     log=logs.append)  # fmt: skip
    assert bf16.backend == "openvino" and "measured" in logs[-1]
    assert sorted(_Timed.built) == ["openvino", "paddle"]  # bf16: ONNX Runtime does not run it


def test_overlay_is_the_blend_formula_to_one_level():
    rng = np.random.RandomState(0)
    image = rng.randint(0, 256, (20, 30, 3), np.uint8)
    mask = rng.randint(0, 4, (20, 30)).astype(np.uint8)
    colours = [[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]
    got = overlay(image, mask, colours, 0.6).astype(float)
    colour = full_palette(colours)[mask][..., ::-1].astype(float)
    assert np.abs(got - (0.4 * image + 0.6 * colour)).max() <= 1.0


# -------------------------------------------------- every backend x precision (slow, real)


@pytest.fixture(scope="session")
def paddle_masks(quantized, tmp_path_factory) -> Dict[str, np.ndarray]:
    out = tmp_path_factory.mktemp("paddle_fp32")
    images = quantized.parent / "images"
    assert infer.main(["--export_dir", str(quantized), "--image_path", str(images),
                       "--save_dir", str(out), "--print_detail", "False"]) == 0  # fmt: skip
    return _masks(out)


@pytest.mark.slow
@pytest.mark.parametrize("backend,precision", CPU)
def test_every_cpu_combination_through_infer(
    backend, precision, quantized, paddle_masks, tmp_path, capsys
):
    images = quantized.parent / "images"
    flags = ["--export_dir", str(quantized), "--backend", backend, "--precision", precision,
             "--cpu_threads", "1"]  # fmt: skip
    assert infer.main([*flags, "--image_path", str(images), "--save_dir", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert f"backend={backend} device=cpu threads=1 precision={precision}" in err
    masks = _masks(tmp_path)
    assert all(m.shape == (H, W) and m.max() < NUM_CLASSES for m in masks.values())
    assert _agreement(masks, paddle_masks) >= MIN_AGREEMENT[precision]
    # --benchmark: the network alone, the same backend
    assert infer.main([*flags, "--benchmark", "--shape", "1", "3", str(H), str(W),
                       "--repeats", "2", "--print_detail", "False"]) == 0  # fmt: skip
    report = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert (report["backend"], report["precision"]) == (backend, precision)
    assert report["latency_ms_median"] > 0
    # --video_path: a clip of the images, masks through the reader/writer threads
    clip = tmp_path / "clip.mp4"
    writer = cv2.VideoWriter(str(clip), cv2.VideoWriter_fourcc(*"mp4v"), 5.0, (W, H))
    for path in sorted(images.glob("*.png")):
        writer.write(cv2.imread(str(path)))
    writer.release()
    assert infer.main([*flags, "--video_path", str(clip), "--save_dir", str(tmp_path)]) == 0
    assert "video: 3 frames 128x64" in capsys.readouterr().out
    cap = cv2.VideoCapture(str(tmp_path / "clip_overlay.mp4"))
    frames = 0
    while cap.read()[0]:
        frames += 1
    cap.release()
    assert frames == 3


@pytest.mark.slow
def test_auto_in_infer_measures_the_fp32_backends(quantized, paddle_masks, tmp_path, capsys):
    argv = ["--export_dir", str(quantized), "--backend", "auto", "--image_path",
            str(quantized.parent / "images"), "--save_dir", str(tmp_path)]  # fmt: skip
    assert infer.main(argv) == 0
    err = capsys.readouterr().err
    line = next(s for s in err.splitlines() if "auto backend:" in s)
    chosen = line.split("auto backend: ")[1].split()[0]
    assert "(fp32, measured: paddle" in line and "onnxruntime" in line and "openvino" in line
    assert "at 1x3x64x128" in line  # the images' size, not a default
    assert f"backend={chosen} device=cpu threads=2 precision=fp32" in err
    assert _agreement(_masks(tmp_path), paddle_masks) >= MIN_AGREEMENT["fp32"]
    assert infer.main(argv) == 0  # a second start reads the cache
    assert "cached in" in capsys.readouterr().err


@pytest.mark.slow
def test_infer_names_what_cannot_run(quantized, tmp_path, capsys):
    deploy = yaml.safe_load((quantized / "deploy.yaml").read_text())
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("model.json", "model.pdiparams", "model.onnx"):
        (bare / name).write_bytes((quantized / name).read_bytes())
    deploy["Deploy"].update(onnx_int8=None, openvino_int8=None)
    (bare / "deploy.yaml").write_text(yaml.safe_dump(deploy))
    code = infer.main(["--export_dir", str(bare), "--backend", "openvino", "--precision", "int8",
                       "--benchmark", "--shape", "1", "3", str(H), str(W)])  # fmt: skip
    lines = [s for s in capsys.readouterr().err.splitlines() if s.startswith("infer.py: error:")]
    assert code == 2 and len(lines) == 1 and "no Deploy.openvino_int8" in lines[0]
    assert "onnxruntime fp32, openvino fp32, openvino bf16" in lines[0]


@pytest.mark.slow
@pytest.mark.parametrize("backend,precision", CPU)
def test_every_cpu_combination_through_serving(backend, precision, quantized, paddle_masks):
    """The serving replica's predictor (app.make_predictor) for each combination."""
    pytest.importorskip("ray")
    from deploy.serving.app import ServeSettings, make_predictor
    from deploy.serving.codec import decode_image

    settings = ServeSettings(str(quantized), backend=backend, precision=precision, cpu_threads=1)
    predictor, name = make_predictor(settings, schema.read_deploy(quantized))
    assert (name, predictor.precision) == (backend, precision)
    names = sorted(paddle_masks)
    images = [decode_image((quantized.parent / "images" / n).read_bytes(), 10**6) for n in names]
    masks = dict(zip(names, predictor.predict(images, batch_size=2)))
    assert _agreement(masks, paddle_masks) >= MIN_AGREEMENT[precision]


@pytest.mark.slow
@pytest.mark.xdist_group("serving")  # one local Ray at a time: with the serving tests' worker
def test_a_served_openvino_int8_request(quantized, tmp_path):
    from deploy.python.backends import create_predictor

    from .test_serving import post, request, start_server

    server = start_server(quantized, tmp_path / "server.log", "--backend", "openvino",
                          "--precision", "int8", "--cpu_threads", "1")  # fmt: skip
    try:
        health = json.loads(request(server.url, "GET", "/health")[2])
        assert health["backend"] == "openvino"
        data = (quantized.parent / "images" / "im0.png").read_bytes()
        status, headers, body = post(server, "/predict", data)
        assert status == 200 and headers["content-type"] == "image/png", body[:200]
    finally:
        assert server.stop() == 0, server.log_tail()
    served = np.asarray(Image.open(io.BytesIO(body)))
    local = create_predictor(quantized, "openvino", RuntimeOptions(cpu_threads=1,
                                                                   precision="int8"))  # fmt: skip
    (expected,) = local.predict([cv2.imread(str(quantized.parent / "images" / "im0.png"))])
    assert served.shape == (H, W) and (served == expected).mean() >= 0.99


@pytest.mark.slow
def test_openvino_int8_is_registered_in_a_version_3_deploy_yaml(quantized):
    deploy = schema.read_deploy(quantized)
    assert deploy["version"] == 3 and deploy["openvino_int8"] == "model_openvino_int8.xml"
    assert (quantized / "model_openvino_int8.bin").is_file()
    calibration = deploy["openvino_int8_calibration"]
    assert calibration["method"] == "nncf" and calibration["num_images"] == 3
    assert calibration["preset"] == "performance" and calibration["ignored"] == []
    assert deploy["onnx_int8"] == "model_int8.onnx"  # ONNX Runtime's INT8 stays
    import openvino as ov

    ops = ov.Core().read_model(str(quantized / "model_openvino_int8.xml")).get_ops()
    kinds = [op.get_type_name() for op in ops]
    assert kinds.count("FakeQuantize") > 10
    # BatchNorms were folded into the convolutions before NNCF placed its quantizers (between
    # a convolution and its BatchNorm they cost the quick-start model 5 to 30 mIoU points)
    assert "BatchNormInference" not in kinds and "Identity" not in kinds


@pytest.mark.slow
def test_openvino_quantize_errors_name_the_problem(quantized, tmp_path):
    from deploy.python.quantize import head_names, quantize

    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png")
    with pytest.raises(ValueError, match="broken.png"):
        quantize(quantized, [bad], "openvino")
    with pytest.raises(ValueError, match="quantize.py writes INT8 models for onnxruntime"):
        quantize(quantized, [bad], "paddle")
    import openvino as ov

    (head,) = head_names(ov.Core().read_model(str(quantized / "model.onnx")))
    assert head.startswith("Conv")  # the classifier: the convolution feeding the output


# ------------------------------------------------------- tools/benchmark.py's bookkeeping


def _benchmark_tool():
    import importlib.util

    spec = importlib.util.spec_from_file_location("benchmark_tool", ROOT / "tools/benchmark.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_benchmark_alternates_paths_and_judges_the_targets():
    tool = _benchmark_tool()
    order: List[str] = []
    runs = {k: functools.partial(order.append, k) for k in ("a", "b", "c")}
    timing = tool.alternate(runs, warmup=1, repeats=2)
    assert order == ["a", "b", "c"] + ["a", "b", "c"] * 2  # warm-up, then rounds of each
    assert set(timing) == {"a", "b", "c"} and all(t["median_ms"] >= 0 for t in timing.values())
    rows = [
        {"model": "m", "path": tool.BASELINE, "median_ms": 100.0, "agree": 1.0, "vs_ort": 1.0},
        {"model": "m", "path": tool.VIDEO_PATH, "median_ms": 30.0, "agree": 0.98, "vs_ort": 0.3,
         "video_fps": 30.0, "network_fps": 32.0, "video_ratio": 30 / 32},
        {"model": "m", "path": "paddle_stdc: OpenVINO bf16", "median_ms": 61.0, "agree": 0.99,
         "vs_ort": 0.61},
        {"model": "m", "path": "x", "error": "RuntimeError: no"},
    ]  # fmt: skip
    verdicts = tool.targets(rows)
    assert verdicts == ["`m`: OpenVINO INT8 0.30 (met: <= 0.35); OpenVINO bf16 0.61 (NOT met: "
                        "<= 0.6); video/network FPS 0.94 (met: >= 0.9)"]  # fmt: skip
    table = tool.render(rows, [1, 3, 512, 1024], 2, verdicts)
    assert "| `m` | paddle_stdc: OpenVINO INT8 (NNCF PTQ) | 30 | 0.30 | 98.000% |" in table
    assert "| `m` | x | fails: RuntimeError: no | — | — |" in table
    assert "| `m` | 30.00 | 32.00 | 0.94 |" in table and verdicts[0] in table
