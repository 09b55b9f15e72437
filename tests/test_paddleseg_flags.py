"""PaddleSeg 2.8's tool flags typed as a PaddleSeg user types them, and one-line config errors."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
import yaml
from PIL import Image

from paddle_stdc.engine.cli import (
    custom_palette,
    miou_comparison,
    parse_custom_color,
    resolve_output_op,
)
from paddle_stdc.engine.metrics import SegMetrics

from .conftest import ROOT, TINY

BASE = ROOT / "configs" / "quickstart" / "stdc1_seg_synthetic_512x256.yml"


def _run(tool: str, *args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / tool), *args],
        cwd=cwd, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip


def _ok(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.fixture(scope="module")
def tiny(tmp_path_factory, synthetic_root) -> dict:
    """A tiny STDC1 config on the generated data and a randomly initialised model file."""
    from paddle_stdc.engine.config import Builder, load_config

    work = tmp_path_factory.mktemp("paddleseg_flags")
    config = work / "tiny.yml"
    config.write_text(TINY.format(base=BASE, root=synthetic_root))
    paddle.seed(0)
    model = Builder(load_config(str(config), pretrained=False)).model
    weights = work / "model.pdparams"
    paddle.save(model.state_dict(), str(weights))
    return {"config": config, "weights": weights, "work": work, "root": synthetic_root}


def _typo_config(tiny: dict, name: str, extra: str) -> Path:
    path = tiny["work"] / name
    path.write_text(TINY.format(base=BASE, root=tiny["root"]) + extra)
    return path


def _one_line_error(proc: subprocess.CompletedProcess, expected: str) -> None:
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and expected in lines[0], proc.stderr[-3000:]


@pytest.mark.slow
def test_predict_as_paddleseg_user_types_it(tiny, tmp_path):
    images = sorted((tiny["root"] / "leftImg8bit" / "val").rglob("*.png"))
    for sub, image in zip(("city_a", "city_b"), images):  # same file name in two folders
        (tmp_path / "imgs" / sub).mkdir(parents=True)
        shutil.copy(image, tmp_path / "imgs" / sub / "frame.png")
    (tmp_path / "imgs" / "list.txt").write_text("city_a/frame.png\ncity_b/frame.png\n")
    save = tmp_path / "result"
    log = _ok(_run(
        "predict.py", "--config", str(tiny["config"]), "--model_path", str(tiny["weights"]),
        "--image_path", str(tmp_path / "imgs" / "list.txt"), "--save_dir", str(save),
        "--aug_pred", "--scales", "0.75", "1.0", "--flip_horizontal",
        "--custom_color", "0", "0", "0", "255", "255", "255",
    ))  # fmt: skip
    assert "multi-scale [0.75, 1], flip" in log  # the flags reached the inference protocol
    for sub in ("city_a", "city_b"):  # subfolders kept, nothing overwritten
        assert (save / "added_prediction" / sub / "frame.jpg").is_file()
        mask = Image.open(save / "pseudo_color_prediction" / sub / "frame.png")
        assert mask.mode == "P" and mask.size == (128, 64)
        palette = np.asarray(mask.getpalette()[:9]).reshape(3, 3)
        assert palette[:2].tolist() == [[0, 0, 0], [255, 255, 255]]  # --custom_color
        assert palette[2].tolist() == [70, 70, 70]  # the rest: Cityscapes' colours


@pytest.mark.slow
def test_export_as_paddleseg_user_types_it(tiny, tmp_path):
    _ok(_run(
        "export.py", "--config", str(tiny["config"]), "--model_path", str(tiny["weights"]),
        "--without_argmax", "--with_softmax", cwd=tmp_path,
    ))  # fmt: skip
    deploy = yaml.safe_load((tmp_path / "output" / "inference_model" / "deploy.yaml").read_text())
    assert deploy["Deploy"]["output_op"] == "softmax"
    assert deploy["Deploy"]["output_dtype"] == "float32"


@pytest.mark.slow
def test_config_typos_print_one_line_from_every_tool(tiny, tmp_path):
    bad_opt = _typo_config(tiny, "opt.yml", "optimizer:\n  momentun: 0.9\n")
    _one_line_error(
        _run("val.py", "--config", str(bad_opt), "--model_path", str(tiny["weights"])),
        "optimizer.momentun: SGD takes no argument 'momentun' -- did you mean 'momentum'?",
    )
    bad_lr = _typo_config(tiny, "lr.yml", "lr_scheduler:\n  type: PolynomialDcay\n")
    _one_line_error(
        _run(
            "predict.py",
            "--config",
            str(bad_lr),
            "--model_path",
            str(tiny["weights"]),
            "--image_path",
            str(tiny["root"] / "leftImg8bit" / "val"),
        ),  # fmt: skip
        "lr_scheduler.type: unknown schedule 'PolynomialDcay' -- did you mean 'PolynomialDecay'?",
    )
    bad_loss = tiny["work"] / "loss.yml"
    bad_loss.write_text(
        TINY.format(base=BASE, root=tiny["root"]).replace("min_kept: 100", "min_kep: 100", 1)
    )
    proc = _run("train.py", "--config", str(bad_loss), "--save_dir", str(tmp_path / "out"),
                "--no_pretrained", "--device", "cpu")  # fmt: skip
    _one_line_error(proc, "loss.types[0].min_kep: OhemCrossEntropyLoss takes no argument")
    assert "did you mean 'min_kept'" in proc.stderr
    assert not (tmp_path / "out" / "iter_4").exists()


def _export_args(**flags) -> argparse.Namespace:
    return argparse.Namespace(
        **{"output_op": None, "without_argmax": False, "with_softmax": False, **flags}
    )


@pytest.mark.parametrize(
    ("flags", "op"),
    [
        ({}, "argmax"),
        ({"without_argmax": True}, "none"),
        ({"without_argmax": True, "with_softmax": True}, "softmax"),
        ({"with_softmax": True}, "argmax"),  # PaddleSeg: softmax, then argmax
        ({"output_op": "softmax"}, "softmax"),
        ({"output_op": "none", "without_argmax": True}, "none"),
    ],
)
def test_export_flags_map_onto_output_op(flags, op):
    assert resolve_output_op(_export_args(**flags)) == op


def test_export_flags_that_contradict_output_op_are_refused():
    with pytest.raises(SystemExit, match="--output_op argmax contradicts"):
        resolve_output_op(_export_args(output_op="argmax", without_argmax=True))


def test_custom_color_overrides_the_first_classes():
    rows = parse_custom_color([1, 2, 3, 4, 5, 6])
    palette = np.arange(12, dtype=np.uint8).reshape(4, 3) + 100
    out = custom_palette(palette, rows)
    assert out.tolist() == [[1, 2, 3], [4, 5, 6], [106, 107, 108], [109, 110, 111]]
    assert palette[0, 0] == 100  # the given palette is not modified
    assert custom_palette(palette, parse_custom_color(None)) is palette
    with pytest.raises(SystemExit, match=r"multiple of 3 numbers\), got 4: 0 0 0 255"):
        parse_custom_color([0, 0, 0, 255])
    with pytest.raises(SystemExit, match="0..255, got 256"):
        parse_custom_color([0, 0, 256])


def _numbers(line: str) -> tuple:
    ours = float(line.split("mIoU: ")[1].split()[0])
    paddleseg = float(line.split("PaddleSeg 2.8 mIoU: ")[1].split()[0])
    return ours, paddleseg


def test_paddleseg_miou_counts_absent_classes_as_zero():
    # class 2 occurs in neither labels nor predictions
    absent = SegMetrics.from_confusion(np.array([[3, 1, 0], [1, 3, 0], [0, 0, 0]]))
    ours, paddleseg = _numbers(miou_comparison(absent))
    assert ours == pytest.approx(0.6, abs=1e-4) and paddleseg == pytest.approx(0.4, abs=1e-4)
    assert "counts the 1 absent classes as IoU 0" in miou_comparison(absent)
    present = SegMetrics.from_confusion(np.array([[3, 1, 0], [1, 3, 0], [0, 1, 2]]))
    ours, paddleseg = _numbers(miou_comparison(present))
    assert ours == paddleseg == pytest.approx(present.miou, abs=1e-4)
