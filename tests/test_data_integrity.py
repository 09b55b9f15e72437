"""Fault injection on the datasets: pairing, missing/corrupt files, label ranges, no hangs."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddleseg.transforms import Normalize
from PIL import Image

from paddle_stdc.data.datasets import (
    Cityscapes,
    DataError,
    Dataset,
    PascalVOC,
    bad_label_values,
    pair_by_stem,
)
from paddle_stdc.engine.config import Builder, load_config

from .conftest import ROOT

VAL = [Normalize()]


def _labels(root: Path, mode: str = "train"):
    return sorted((root / "gtFine" / mode).rglob("*_gtFine_labelTrainIds.png"))


def _images(root: Path, mode: str = "train"):
    return sorted((root / "leftImg8bit" / mode).rglob("*_leftImg8bit.png"))


def _stem(path: Path) -> str:
    return path.name.split("_leftImg8bit")[0].split("_gtFine")[0]


def test_cityscapes_pairs_by_stem_not_by_position(own_root):
    _labels(own_root)[1].unlink()  # zipping sorted lists would now shift every later pair
    with pytest.raises(DataError, match=_stem(_images(own_root)[1]) + "_leftImg8bit.png"):
        Cityscapes(VAL, str(own_root), mode="train")
    ds = Cityscapes(VAL, str(own_root), mode="train", on_error="skip")
    assert len(ds) == len(_images(own_root)) - 1
    for image, label in ds.file_list:
        assert _stem(Path(image)) == _stem(Path(label))


def test_pair_by_stem_reports_both_directions():
    pairs = pair_by_stem(["a/x_img.png", "a/y_img.png"], ["b/y_lbl.png"], "_img.png", "_lbl.png",
                         on_error="skip")  # fmt: skip
    assert pairs == [["a/y_img.png", "b/y_lbl.png"]]
    with pytest.raises(DataError, match=r"label b/z_lbl.png has no image"):
        pair_by_stem(["a/y_img.png"], ["b/y_lbl.png", "b/z_lbl.png"], "_img.png", "_lbl.png")


def test_corrupt_image_names_the_file_and_skip_mode_counts_it(own_root):
    bad = _images(own_root)[2]
    bad.write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    ds = Cityscapes(VAL, str(own_root), mode="train")
    index = [Path(p[0]) for p in ds.file_list].index(bad)
    with pytest.raises(DataError, match=f"{bad}.*cannot be decoded"):
        ds[index]
    skipping = Cityscapes(VAL, str(own_root), mode="train", on_error="skip")
    sample = skipping[index]  # the next sample instead
    assert sample["img"].shape[0] == 3 and len(skipping.skipped) == 1
    assert str(bad) in skipping.skipped[0][1]


def test_corrupt_label_and_size_mismatch(own_root):
    labels = _labels(own_root)
    labels[0].write_bytes(b"garbage")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(labels[1])
    ds = Cityscapes(VAL, str(own_root), mode="train")
    names = [Path(p[1]) for p in ds.file_list]
    with pytest.raises(DataError, match=f"{labels[0]} cannot be decoded"):
        ds[names.index(labels[0])]
    with pytest.raises(DataError, match=f"{labels[1]} is 10x10 .* its image is 128x64"):
        ds[names.index(labels[1])]


def test_out_of_range_labels_are_named_with_their_values(own_root):
    label = _labels(own_root)[0]
    arr = np.asarray(Image.open(label)).copy()
    arr[0, :3] = [19, 40, 254]  # 255 stays legal (ignore_index)
    arr[1, 0] = 255
    Image.fromarray(arr).save(label)
    ds = Cityscapes(VAL, str(own_root), mode="train")
    index = [Path(p[1]) for p in ds.file_list].index(label)
    with pytest.raises(DataError, match=r"values 19, 40, 254 outside \[0, 19\)"):
        ds[index]
    assert bad_label_values(np.array([[0, 18, 255]], np.uint8), 19, 255) == []
    assert bad_label_values(np.array([[0, 300]], np.int32), 19, 255) == [300]


def test_colour_label_is_refused(own_root):
    label = _labels(own_root)[0]
    Image.fromarray(np.zeros((64, 128, 3), np.uint8)).save(label)
    ds = Cityscapes(VAL, str(own_root), mode="train")
    index = [Path(p[1]) for p in ds.file_list].index(label)
    with pytest.raises(DataError, match="single-channel"):
        ds[index]


def test_file_list_dataset_names_missing_files(own_root):
    images, labels = _images(own_root), _labels(own_root)
    lines = [
        f"{i.relative_to(own_root)} {lb.relative_to(own_root)}" for i, lb in zip(images, labels)
    ]
    lines.append("leftImg8bit/train/nowhere.png gtFine/train/nowhere.png")
    listing = own_root / "train.txt"
    listing.write_text("\n".join(lines) + "\n")
    kwargs = dict(mode="train", dataset_root=str(own_root), transforms=VAL, num_classes=19,
                  train_path=str(listing))  # fmt: skip
    with pytest.raises(DataError, match="nowhere.png"):
        Dataset(**kwargs)
    ds = Dataset(**kwargs, on_error="skip")
    assert len(ds) == len(images)
    assert ds[0]["label"].shape == (64, 128)


def test_missing_roots_never_download(tmp_path, monkeypatch):
    import paddleseg.datasets.voc as voc

    def no_network(*args, **kwargs):  # pragma: no cover - reaching it is the failure
        raise AssertionError("tried to download")

    monkeypatch.setattr(voc, "download_file_and_uncompress", no_network)
    for root in (None, str(tmp_path / "missing")):
        with pytest.raises(FileNotFoundError, match="never downloads"):
            PascalVOC(VAL, dataset_root=root, mode="train")
    with pytest.raises(FileNotFoundError, match="never downloads"):
        Cityscapes(VAL, str(tmp_path / "missing"))


def _train(config: Path, save_dir: Path, *extra: str) -> subprocess.CompletedProcess:
    # A subprocess with a timeout: a hang fails the test instead of stalling the suite.
    cmd = [sys.executable, str(ROOT / "tools" / "train.py"), "--config", str(config),
           "--save_dir", str(save_dir), "--iters", "6", "--save_interval", "100", "--seed", "0",
           "--device", "cpu", "--no_pretrained", *extra]  # fmt: skip
    return subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "2"])
def test_training_on_a_corrupt_file_fails_promptly_naming_it(
    tmp_path, own_root, tiny_config, workers
):
    bad = _images(own_root)[3]
    bad.write_bytes(b"not an image at all")
    config = tmp_path / "bad.yml"
    config.write_text(tiny_config.read_text().replace(_root_in(tiny_config), str(own_root)))
    proc = _train(config, tmp_path / "out", "--num_workers", workers)
    assert proc.returncode != 0
    assert "DataError" in proc.stderr and str(bad) in proc.stderr, proc.stderr[-2000:]


@pytest.mark.slow
def test_training_with_skip_mode_completes_and_reports(tmp_path, own_root, tiny_config):
    bad = _images(own_root)[3]
    bad.write_bytes(b"not an image at all")
    config = tmp_path / "skip.yml"
    text = tiny_config.read_text().replace(_root_in(tiny_config), str(own_root))
    config.write_text(text.replace("train_dataset:\n", "train_dataset:\n  on_error: skip\n", 1))
    proc = _train(config, tmp_path / "out")
    assert proc.returncode == 0, proc.stderr[-2000:]
    log = proc.stdout + proc.stderr
    assert "skipped a sample" in log and str(bad) in log


def _root_in(config: Path) -> str:
    for line in config.read_text().splitlines():
        if line.strip().startswith("dataset_root:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no dataset_root in {config}")


@pytest.mark.slow
def test_check_dataset_tool_reports_every_problem_and_class_statistics(
    tmp_path, own_root, tiny_config
):
    config = tmp_path / "check.yml"
    config.write_text(tiny_config.read_text().replace(_root_in(tiny_config), str(own_root)))
    tool = [sys.executable, str(ROOT / "tools" / "check_dataset.py"), "--config", str(config),
            "--num_workers", "2"]  # fmt: skip
    clean = subprocess.run(tool, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr[-2000:]
    assert "train_dataset (Cityscapes, train): 4 samples, 0 problems" in clean.stdout
    assert "val_dataset (Cityscapes, val): 2 samples, 0 problems" in clean.stdout
    assert "ignore" in clean.stdout and "128x64: 4" in clean.stdout
    assert "road" in clean.stdout and "sidewalk" in clean.stdout  # the dataset's class names

    labels, images = _labels(own_root), _images(own_root)
    arr = np.asarray(Image.open(labels[0])).copy()
    arr[0, 0] = 77
    Image.fromarray(arr).save(labels[0])
    labels[1].unlink()
    images[2].write_bytes(b"xx")
    bad = subprocess.run(tool, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1
    assert "train_dataset (Cityscapes, train): 3 samples, 3 problems" in bad.stdout
    for needle in (f"{images[1]} has no label", f"{labels[0]} has values 77",
                   f"{images[2]} cannot be decoded"):  # fmt: skip
        assert needle in bad.stdout, bad.stdout


@pytest.mark.slow
@pytest.mark.parametrize("workers", ["0", "1"])
def test_evaluation_on_a_corrupt_label_fails_naming_it(tmp_path, own_root, tiny_config, workers):
    bad = _labels(own_root, "val")[1]
    bad.write_bytes(b"broken")
    config = tmp_path / "val.yml"
    config.write_text(tiny_config.read_text().replace(_root_in(tiny_config), str(own_root)))
    weights = tmp_path / "model.pdparams"
    paddle.save(
        Builder(load_config(str(config), pretrained=False)).model.state_dict(), str(weights)
    )
    cmd = [sys.executable, str(ROOT / "tools" / "val.py"), "--config", str(config),
           "--model_path", str(weights), "--num_workers", workers, "--device", "cpu"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    # A user's data mistake: one line `error: ...` naming the file, no traceback.
    assert f"{bad} cannot be decoded" in proc.stderr, proc.stderr[-2000:]
    assert proc.stderr.startswith("error: ") and "Traceback" not in proc.stderr, proc.stderr
