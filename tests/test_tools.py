"""The command-line tools run end to end as a user would call them."""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from paddle_stdc.engine.cli import eval_kwargs

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
    assert "PaddleSeg 2.8 mIoU: " in log  # beside ours (absent classes count as 0)

    images = synthetic_root / "leftImg8bit" / "val"
    _tool("predict.py", "--config", str(config), "--model_path", str(weights),
          "--image_path", str(images), "--save_dir", str(tmp_path / "pred"))  # fmt: skip
    assert len(list((tmp_path / "pred" / "pseudo_color_prediction").rglob("*.png"))) == 2
    assert len(list((tmp_path / "pred" / "added_prediction").rglob("*.jpg"))) == 2


@pytest.mark.slow
def test_train_reports_a_bad_override_key(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "train.py"), "--config",
         str(ROOT / "configs" / "stdc1_seg_cityscapes_1024x512_80k.yml"),
         "--opts", "modle.num_classes=3"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode != 0
    assert "modle" in proc.stderr


def _tool_module(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_tool", ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_predict_takes_paddlesegs_augmentation_flags():
    base = ["--config", "c.yml", "--model_path", "m.pdparams", "--image_path", "list.txt"]
    parse = _tool_module("predict").parse_args
    args = parse([*base, "--aug_pred", "--scales", "0.75", "1.0", "--flip_vertical",
                  "--is_slide", "--crop_size", "64", "32", "--stride", "48", "24",
                  "--custom_color", "0", "0", "0"])  # fmt: skip
    assert eval_kwargs(args) == {
        "aug_eval": True, "scales": [0.75, 1.0], "flip_horizontal": False,
        "flip_vertical": True, "is_slide": True, "crop_size": [64, 32], "stride": [48, 24],
    }  # fmt: skip
    assert args.custom_color == [0, 0, 0]
    assert parse([*base, "--aug_eval"]).aug_eval  # this project's earlier spelling
    assert eval_kwargs(parse([*base, "--flip_horizontal"]), {"scales": 2.0}) == {"scales": 2.0}


def test_export_defaults_are_paddlesegs():
    args = _tool_module("export").parse_args(["--config", "c.yml"])
    assert args.save_dir == "output/inference_model"
    assert args.output_op is None and not args.without_argmax and not args.with_softmax


@pytest.mark.slow
def test_val_reports_a_config_typo_in_one_line(tmp_path):
    config = tmp_path / "typo.yml"
    config.write_text(
        f"_base_: {ROOT / 'configs' / 'stdc1_seg_cityscapes_1024x512_80k.yml'}\n"
        "optimizer:\n  weight_decy: 0.1\n"
    )
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "val.py"), "--config", str(config),
         "--model_path", str(tmp_path / "none.pdparams")],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert "error: optimizer.weight_decy: SGD takes no argument 'weight_decy' -- did you mean " \
           "'weight_decay'?" in proc.stderr  # fmt: skip
