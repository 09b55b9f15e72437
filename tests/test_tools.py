"""The command-line tools run end to end as a user would call them."""

from __future__ import annotations

import subprocess
import sys

import pytest

from .conftest import ROOT, TINY


def _tool(name: str, *args: str) -> str:
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


@pytest.mark.slow
def test_train_val_predict_cli(tmp_path, synthetic_root):
    base = ROOT / "configs" / "quickstart" / "stdc1_seg_synthetic_512x256.yml"
    config = tmp_path / "tiny.yml"
    config.write_text(TINY.format(base=base, root=synthetic_root))
    save = tmp_path / "out"
    log = _tool(
        "train.py", "--config", str(config), "--save_dir", str(save), "--iters", "2",
        "--save_interval", "2", "--log_iters", "1", "--seed", "0", "--device", "cpu",
        "--no_pretrained", "--opts", "batch_size=2",
    )  # fmt: skip
    assert "[TRAIN] epoch: 1, iter: 2/2" in log and "ETA" in log
    weights = save / "iter_2" / "model.pdparams"
    assert weights.is_file()

    log = _tool("val.py", "--config", str(config), "--model_path", str(weights),
                "--eval_scale", "seg50", "--aug_eval", "--flip_horizontal")  # fmt: skip
    assert "mIoU" in log and "Seg50" in log and "flip" in log

    images = synthetic_root / "leftImg8bit" / "val"
    _tool("predict.py", "--config", str(config), "--model_path", str(weights),
          "--image_path", str(images), "--save_dir", str(tmp_path / "pred"))  # fmt: skip
    assert len(list((tmp_path / "pred" / "pseudo_color_prediction").rglob("*.png"))) == 2
    assert len(list((tmp_path / "pred" / "added_prediction").rglob("*.jpg"))) == 2


def test_train_reports_a_bad_override_key(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), "--config",
         str(ROOT / "configs" / "stdc1_seg_cityscapes_1024x512_80k.yml"),
         "--opts", "modle.num_classes=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "modle" in proc.stderr
