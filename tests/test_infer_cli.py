"""deploy/python/infer.py: PaddleSeg 2.8's command line, list files, devices, and video."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import List, Optional

import cv2
import numpy as np
import pytest
from PIL import Image

from deploy.python import infer
from deploy.python.predictor import RuntimeOptions
from deploy.python.video import VideoError, segment_video

from .conftest import ROOT

NUM_CLASSES = 3
H, W, FRAMES, FPS = 64, 128, 8, 10.0
SCRIPT = "deploy/python/infer.py"  # as users type it, from the repository root


@pytest.fixture(scope="session")
def tiny_export(tmp_path_factory) -> Path:
    """A random STDC1 export without argmax (so --with_argmax matters), as test_export does."""
    import paddle

    import paddle_stdc
    from paddle_stdc.export import export_model

    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=NUM_CLASSES)
    export_dir = tmp_path_factory.mktemp("infer_cli") / "export"
    export_model(model, export_dir, [{"type": "Normalize"}], NUM_CLASSES, output_op="none")
    return export_dir


@pytest.fixture(scope="session")
def inputs(tmp_path_factory) -> Path:
    """Two same-named images in subfolders, a list file naming them, and an 8-frame clip."""
    root = tmp_path_factory.mktemp("infer_inputs")
    rng = np.random.RandomState(0)
    for sub in ("a", "b"):
        (root / "images" / sub).mkdir(parents=True)
        cv2.imwrite(str(root / "images" / sub / "x.png"), rng.randint(0, 255, (H, W, 3), np.uint8))
    (root / "list.txt").write_text("# image list\nimages/a/x.png\n\nimages/b/x.png\n")
    writer = cv2.VideoWriter(str(root / "clip.mp4"), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (W, H))
    for i in range(FRAMES):
        frame = np.zeros((H, W, 3), np.uint8)
        frame[:, : (i + 1) * W // FRAMES] = (40 * i) % 255
        writer.write(frame)
    writer.release()
    return root


def _infer(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, SCRIPT, *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


def _errors(stderr: str) -> List[str]:
    return [line for line in stderr.splitlines() if line.startswith("infer.py: error:")]


def _check_masks(out: Path) -> None:
    for sub in ("a", "b"):  # same file name in two folders: both kept
        mask = np.asarray(Image.open(out / sub / "x.png"))
        assert mask.shape == (H, W) and mask.max() < NUM_CLASSES  # class ids after argmax
        assert (out / sub / "x_overlay.jpg").is_file()


def _video_info(path: Path):
    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    info = (frames, int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)),
            int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), cap.get(cv2.CAP_PROP_FPS))  # fmt: skip
    cap.release()
    return info


# ---------------------------------------------------------------- command lines (subprocess)


@pytest.mark.slow
def test_paddleseg_command_verbatim(tiny_export, inputs, tmp_path):
    out = tmp_path / "out"
    proc = _infer(
        "--config", f"{tiny_export}/deploy.yaml", "--image_path", str(inputs / "images"),
        "--save_dir", str(out), "--use_trt", "False", "--enable_mkldnn", "True",
        "--benchmark", "False", "--with_argmax", "--print_detail", "False",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "wrote 2 masks" in proc.stdout
    assert "backend=" not in proc.stderr  # --print_detail False
    _check_masks(out)


@pytest.mark.slow
def test_list_file_trt_on_cpu_and_bare_benchmark(tiny_export, inputs, tmp_path):
    out = tmp_path / "out"
    proc = _infer(
        "--export_dir", str(tiny_export), "--image_path", str(inputs / "list.txt"),
        "--save_dir", str(out), "--use_trt", "True", "--precision", "fp16",
        "--enable_auto_tune", "True", "--min_subgraph_size", "5", "--benchmark",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "--use_trt True needs --device gpu" in proc.stderr
    assert "--precision fp16" in proc.stderr and "--enable_auto_tune" in proc.stderr
    assert "backend=paddle device=cpu" in proc.stderr and "tensorrt=False" in proc.stderr
    report = json.loads(proc.stdout.strip().splitlines()[-1])  # bare --benchmark = True
    assert report["images"] == 2 and report["fps"] > 0
    _check_masks(out)


@pytest.mark.slow
def test_device_gpu_on_cpu_build_is_one_clear_error(tiny_export, inputs, tmp_path):
    import paddle

    if paddle.is_compiled_with_cuda():
        pytest.skip("this Paddle build has CUDA")
    proc = _infer("--export_dir", str(tiny_export), "--image_path", str(inputs / "images"),
                  "--save_dir", str(tmp_path / "out"), "--device", "gpu")  # fmt: skip
    assert proc.returncode == 2
    assert len(_errors(proc.stderr)) == 1 and "--device gpu" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "out").exists()


@pytest.mark.slow
def test_video_cli(tiny_export, inputs, tmp_path):
    proc = _infer("--export_dir", str(tiny_export), "--video_path", str(inputs / "clip.mp4"),
                  "--save_dir", str(tmp_path), "--batch_size", "2")  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert _video_info(tmp_path / "clip_overlay.mp4") == (FRAMES, W, H, FPS)
    assert f"frame {FRAMES}: " in proc.stdout
    summary = [line for line in proc.stdout.splitlines() if "end-to-end FPS" in line]
    assert len(summary) == 1 and f"video: {FRAMES} frames {W}x{H}" in summary[0]


@pytest.mark.slow
def test_user_mistakes_are_one_line(tmp_path, inputs):
    """Each fails before the model loads: exit code 2, one error line naming flag and value."""
    not_deploy = tmp_path / "train.yml"
    not_deploy.write_text("model: {}\n")
    export = str(tmp_path)  # never loaded: every case fails first
    cases = [
        (["--export_dir", export, "--use_trt", "maybe"], "'maybe'"),
        (["--image_path", str(inputs / "images")], "--config --export_dir"),
        (["--config", str(not_deploy), "--export_dir", export], "not allowed with"),
        (["--config", str(not_deploy), "--image_path", str(inputs / "images")], "train.yml"),
        (["--export_dir", export, "--video_path", str(tmp_path / "no.mp4")], "no.mp4"),
        (["--export_dir", export, "--image_path", str(tmp_path / "none")], "none"),
        (["--export_dir", export], "--image_path, --video_path or --benchmark"),
        (["--export_dir", export, "--benchmark", "--batch_size", "0"], "--batch_size"),
    ]
    for argv, named in cases:
        proc = _infer(*argv)
        assert proc.returncode == 2, (argv, proc.stderr)
        assert len(_errors(proc.stderr)) == 1 and named in proc.stderr, (argv, proc.stderr)
        assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------- in process: flags


def test_boolean_flags_take_values_or_stand_alone(tmp_path):
    base = ["--export_dir", "e"]
    args = infer.parse_args(base)
    assert (args.use_trt, args.enable_mkldnn, args.benchmark, args.print_detail) == (
        False, True, False, True)  # fmt: skip
    args = infer.parse_args([*base, "--use_trt", "--benchmark", "--enable_auto_tune"])
    assert args.use_trt and args.benchmark and args.enable_auto_tune
    args = infer.parse_args([*base, "--use_trt", "True", "--enable_mkldnn", "False"])
    assert args.use_trt and not args.enable_mkldnn
    assert infer.parse_args([*base, "--disable_mkldnn"]).enable_mkldnn is False
    (tmp_path / "deploy.yaml").write_text("Deploy: {}\n")
    args = infer.parse_args(["--config", str(tmp_path / "deploy.yaml"), "--print_detail", "0"])
    assert args.print_detail is False and infer.export_dir_of(args) == tmp_path


def test_cpu_drops_gpu_only_settings_with_warnings(capsys):
    args = infer.parse_args(["--export_dir", "e", "--use_trt", "True", "--precision", "int8"])
    options = infer.runtime_options(args)
    assert options.device == "cpu" and not options.use_trt and options.precision == "fp32"
    err = capsys.readouterr().err
    assert "--use_trt True needs --device gpu" in err and "--precision int8" in err
    bf16 = infer.runtime_options(infer.parse_args(["--export_dir", "e", "--precision", "bf16"]))
    assert bf16.precision == "bf16"  # oneDNN bfloat16 stays on CPU


class _FakeTuner:
    def __init__(self, fail: bool = False) -> None:
        self.calls: List[RuntimeOptions] = []
        self.fail = fail

    def __call__(self, options):
        self.calls.append(options)
        if self.fail:
            raise RuntimeError("out of GPU memory")
        if options.collect_shape_range_file:
            Path(options.collect_shape_range_file).write_text("shape ranges")
        return self

    def predict(self, images, batch_size):
        return [np.zeros(img.shape[:2], np.uint8) for img in images]


def test_auto_tune_collects_then_uses_shape_ranges(tmp_path, monkeypatch, capsys):
    image = np.zeros((H, W, 3), np.uint8)
    gpu = RuntimeOptions(device="gpu", use_trt=True, precision="fp16")
    tuner, shape_file = _FakeTuner(), tmp_path / "shapes.pbtxt"
    tuned = infer.auto_tune(tuner, gpu, [image], shape_file)
    (collect,) = tuner.calls  # one collecting run, TensorRT off, recording into the file
    assert collect.collect_shape_range_file == str(shape_file) and not collect.use_trt
    assert tuned.shape_range_file == str(shape_file) and tuned.use_trt
    assert tuned.collect_shape_range_file is None  # the real run does not collect again
    failed = infer.auto_tune(_FakeTuner(fail=True), gpu, [image], tmp_path / "f.pbtxt")
    assert failed == gpu and "out of GPU memory" in capsys.readouterr().err
    cpu = RuntimeOptions()
    assert infer.auto_tune(tuner, cpu, [image], shape_file) == cpu and len(tuner.calls) == 1
    assert "skipped" in capsys.readouterr().err


# -------------------------------------------------------------- in process: video pipeline


class _FakePredictor:
    """Masks from the frame's brightness; optionally fails or is interrupted at a call."""

    deploy: dict = {}

    def __init__(self, raise_at: Optional[int] = None, error: type = RuntimeError) -> None:
        self.calls, self.raise_at, self.error = 0, raise_at, error

    def predict(self, images, batch_size):
        self.calls += 1
        if self.calls == self.raise_at:
            raise self.error("boom")
        return [(img[..., 0] > 0).astype(np.uint8) for img in images]


def _video_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("video-")]


def test_segment_video_with_fake_predictor(inputs, tmp_path):
    lines: List[str] = []
    palette = np.zeros((256, 3), np.uint8)
    palette[1] = (255, 0, 0)
    stats = segment_video(_FakePredictor(), inputs / "clip.mp4", tmp_path, palette,
                          batch_size=3, queue_size=2, log=lines.append)  # fmt: skip
    assert (stats.frames, stats.width, stats.height, stats.fps_in) == (FRAMES, W, H, FPS)
    assert len(lines) == FRAMES and stats.fps > 0 and not stats.interrupted
    assert _video_info(stats.output) == (FRAMES, W, H, FPS)
    assert "end-to-end FPS" in stats.summary() and not _video_threads()


def test_video_errors_stop_cleanly(inputs, tmp_path):
    palette = np.zeros((256, 3), np.uint8)
    broken = tmp_path / "broken.mp4"
    broken.write_text("not a video")
    with pytest.raises(VideoError, match="broken.mp4"):
        segment_video(_FakePredictor(), broken, tmp_path, palette)
    with pytest.raises(RuntimeError, match="boom"):  # predictor fails mid-stream
        segment_video(_FakePredictor(raise_at=2), inputs / "clip.mp4", tmp_path, palette,
                      queue_size=1)  # fmt: skip
    assert not _video_threads()
    stats = segment_video(_FakePredictor(raise_at=3, error=KeyboardInterrupt),
                          inputs / "clip.mp4", tmp_path, palette, log=None)  # fmt: skip
    assert stats.interrupted and stats.frames == 2 and not _video_threads()
    assert _video_info(stats.output)[0] == 2  # what was done is a playable video
