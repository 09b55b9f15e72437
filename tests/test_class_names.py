"""Class names travel from the config's dataset to logs, VisualDL, exports and infer.py.

Names come from :func:`paddle_stdc.data.palettes.config_class_names`: a dataset's
``class_names`` key, a ``labels.txt``, or Cityscapes'/VOC's built-in names. (Serving's JSON,
``/classes`` and the web page are checked in tests/test_serving.py and test_serving_page.py,
on the session's Cityscapes-layout export.)
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from PIL import Image

from deploy.visual import legend_entries, overlay, with_legend
from paddle_stdc.data.palettes import (
    CITYSCAPES_CLASSES,
    VOC_CLASSES,
    config_class_names,
    dataset_class_names,
)
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.logging import VisualDLWriter, class_tags
from paddle_stdc.engine.validate import ConfigError, validate_config

from .conftest import ROOT, all_configs

CUSTOM = ROOT / "configs" / "custom" / "stdc1_seg_custom_512x512.yml"
NAMES = ["background", "crack", "rust"]


@pytest.fixture()
def custom_root(tmp_path) -> Path:
    """A 3-class file-list dataset: two 32x32 images, labels, train.txt and val.txt."""
    root = tmp_path / "data"
    rng = np.random.RandomState(0)
    for sub in ("images", "labels"):
        (root / sub).mkdir(parents=True)
    for i in range(2):
        cv2.imwrite(str(root / "images" / f"{i}.png"), rng.randint(0, 255, (32, 32, 3), np.uint8))
        label = np.zeros((32, 32), np.uint8)
        label[8:, :16], label[:8, 16:] = 1, 2
        Image.fromarray(label).save(root / "labels" / f"{i}.png")
    for split in ("train", "val"):
        (root / f"{split}.txt").write_text("images/0.png labels/0.png\nimages/1.png labels/1.png\n")
    return root


def custom_config(tmp_path: Path, root: Path, names=None, iters: int = 2) -> Path:
    """The shipped custom-dataset config on ``root`` with 3 classes (and ``names`` on both
    datasets, if given)."""
    listed = names if isinstance(names, str) else list(names or [])
    extra = "" if names is None else f"  class_names: {listed}\n"
    text = f"""
_base_: {CUSTOM}
batch_size: 2
iters: {iters}
palette: [[0, 0, 0], [230, 25, 75], [60, 180, 75]]
train_dataset:
  dataset_root: {root}
  train_path: {root}/train.txt
  num_classes: 3
{extra}  transforms:
    - type: RandomPaddingCrop
      crop_size: [32, 32]
    - type: Normalize
val_dataset:
  dataset_root: {root}
  val_path: {root}/val.txt
  num_classes: 3
{extra}"""
    path = tmp_path / "custom.yml"
    path.write_text(text)
    return path


def _load(path: Path):
    return load_config(str(path), pretrained=False)


# ------------------------------------------------------------------------- where names come from


def test_shipped_configs_name_their_classes():
    """Cityscapes and VOC configs get the built-in names, the custom one (no labels file) none."""
    seen = {"cityscapes": 0, "voc": 0, "custom": 0}
    for path in all_configs():
        names = config_class_names(_load(path).dic)
        kind = path.parent.name if path.parent.name == "custom" else path.stem
        if "voc" in kind:
            assert names == list(VOC_CLASSES), path
            seen["voc"] += 1
        elif kind == "custom":
            assert names is None, path
            seen["custom"] += 1
        else:  # Cityscapes recipes and the quick start's Cityscapes-layout data
            assert names == list(CITYSCAPES_CLASSES), path
            seen["cityscapes"] += 1
    assert all(seen.values()), seen


def test_class_names_key_and_labels_file(tmp_path, custom_root):
    cfg = _load(custom_config(tmp_path, custom_root, NAMES))
    validate_config(cfg)
    assert config_class_names(cfg.dic) == NAMES
    # no key: dataset_root/labels.txt (one name a line, trailing blank lines ignored)
    cfg = _load(custom_config(tmp_path, custom_root))
    assert config_class_names(cfg.dic) is None
    (custom_root / "labels.txt").write_text("background\ncrack\nrust corrosion\n\n")
    validate_config(cfg)
    assert config_class_names(cfg.dic) == ["background", "crack", "rust corrosion"]
    # the key wins over the file
    assert dataset_class_names({"num_classes": 3, "class_names": NAMES,
                                "dataset_root": str(custom_root)}) == NAMES  # fmt: skip
    # a labels.txt next to the list files, when the dataset root has none
    (custom_root / "labels.txt").unlink()
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "labels.txt").write_text("a\nb\nc\n")
    section = {"type": "Dataset", "num_classes": 3, "dataset_root": str(custom_root),
               "train_path": str(lists / "train.txt")}  # fmt: skip
    assert dataset_class_names(section) == ["a", "b", "c"]


@pytest.mark.parametrize(
    ("names", "labels", "message"),
    [
        (["a", "b"], None, r"train_dataset.class_names has 2 names but the dataset has 3 classes"),
        ("a, b, c", None, r"train_dataset.class_names must be a list of names"),
        (["a", "a", "b"], None, r"train_dataset.class_names: 'a' named more than once"),
        (["a", "", "b"], None, r"train_dataset.class_names: name 1 is ''"),
        (None, "a\nb\n", r"labels.txt has 2 names but the dataset has 3 classes"),
        (None, "a\n\nb\nc\n", r"labels.txt: line 2 is empty"),
    ],
)  # fmt: skip
def test_wrong_names_are_one_line_config_errors(tmp_path, custom_root, names, labels, message):
    if labels is not None:
        (custom_root / "labels.txt").write_text(labels)
    cfg = _load(custom_config(tmp_path, custom_root, names))
    with pytest.raises(ConfigError, match=message) as err:
        validate_config(cfg, for_training=False)
    assert "\n" not in str(err.value)


def test_train_and_val_naming_different_classes_is_an_error(tmp_path, custom_root):
    cfg = _load(custom_config(tmp_path, custom_root, NAMES))
    cfg.dic["val_dataset"]["class_names"] = ["background", "crack", "dent"]
    with pytest.raises(ConfigError, match="train_dataset and val_dataset name different classes"):
        validate_config(cfg)


def test_builder_builds_datasets_with_a_class_names_key(tmp_path, custom_root):
    """PaddleSeg's constructors take no ``class_names``: the Builder leaves it out."""
    builder = Builder(_load(custom_config(tmp_path, custom_root, NAMES)))
    assert len(builder.train_dataset) == 2 and len(builder.val_dataset) == 2


@pytest.mark.slow
def test_export_cli_reports_a_wrong_count_in_one_line(tmp_path, custom_root):
    config = custom_config(tmp_path, custom_root, ["a", "b"])
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export.py"), "--config", str(config),
         "--save_dir", str(tmp_path / "export")],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-2000:]
    assert len(errors) == 1 and "class_names has 2 names" in errors[0], proc.stderr[-2000:]


# ---------------------------------------------------------------------------- VisualDL and logs


def test_visualdl_class_tags_are_sanitised_names():
    names = ["road", "traffic light", "a/b", "a b", "", "ünï"]
    assert class_tags(7, names) == [
        "road", "traffic_light", "a_b", "a_b_3", "class_4", "n", "class_6"
    ]  # fmt: skip
    assert class_tags(2) == ["class_0", "class_1"]


def test_class_scalars_skip_undefined_ious(tmp_path):
    writer = VisualDLWriter(tmp_path, True)
    written = {}
    writer._writer.add_scalar = lambda tag, value, step: written.setdefault(tag, (value, step))
    writer.class_scalars(np.array([0.5, np.nan, 0.25]), 7, ["road", "sky", "traffic light"])
    writer.close()
    assert written == {"Evaluate/IoU/road": (0.5, 7), "Evaluate/IoU/traffic_light": (0.25, 7)}


class _Records(logging.Handler):
    def __init__(self):
        super().__init__()
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


@pytest.mark.slow
def test_training_evaluations_log_per_class_iou_by_name(tmp_path, custom_root):
    """--do_eval: at every evaluation the log has the named table and VisualDL one scalar per
    class, ``Evaluate/IoU/<name>``, next to ``Evaluate/mIoU``."""
    from visualdl import LogReader

    from paddle_stdc.engine.trainer import TrainOptions, train

    names = ["background", "crack", "rust spot"]
    builder = Builder(_load(custom_config(tmp_path, custom_root, names, iters=2)))
    options = TrainOptions(save_dir=str(tmp_path / "out"), save_interval=1, log_iters=1, seed=0,
                           do_eval=True, use_vdl=True, num_vis=0)  # fmt: skip
    records = _Records()
    log = logging.getLogger("paddle_stdc")
    log.addHandler(records)
    level = log.level
    log.setLevel(logging.INFO)
    try:
        result = train(builder, options)
    finally:
        log.removeHandler(records)
        log.setLevel(level)
    tables = [m for m in records.messages if m.startswith("[EVAL] Class IoU:")]
    assert len(tables) == 2  # iterations 1 and 2
    lines = tables[-1].splitlines()
    iou = result.last_eval.metrics.class_iou
    for k, name in enumerate(names):
        (row,) = [line for line in lines if line.startswith(name + " ")]
        assert row.split()[len(name.split())] == ("-" if np.isnan(iou[k]) else f"{iou[k]:.4f}")
    (log_file,) = (tmp_path / "out").glob("vdlrecords.*.log")
    reader = LogReader(file_path=str(log_file))
    tags = set(reader.get_tags()["scalar"])
    assert {"Evaluate/mIoU", "Evaluate/Acc"} <= tags
    defined = [k for k in range(3) if not np.isnan(iou[k])]
    assert defined  # the labels hold all three classes: each has an IoU
    for k in defined:
        tag = "Evaluate/IoU/" + ["background", "crack", "rust_spot"][k]
        values = reader.get_data("scalar", tag)
        assert [v.id for v in values] == [1, 2]
        assert values[-1].value == pytest.approx(iou[k], abs=1e-6)


# --------------------------------------------------------------------------- export and infer.py


def test_legend_lists_the_classes_present_by_name():
    mask = np.zeros((100, 60), np.uint8)
    mask[:10], mask[10:15, :6] = 2, 1
    assert legend_entries(mask, ["road", "car", "sky"]) == [
        (0, "road", 5370 / 6000), (2, "sky", 600 / 6000), (1, "car", 30 / 6000)
    ]  # fmt: skip
    assert [label for _, label, _ in legend_entries(mask)] == ["class 0", "class 2", "class 1"]
    colours = [[10, 20, 30], [200, 0, 0], [0, 0, 200]]
    image = overlay(np.full((100, 60, 3), 90, np.uint8), mask, colours, 0.5)
    named = with_legend(image, mask, colours, ["road", "car", "a much longer class name"])
    by_id = with_legend(image, mask, colours)
    assert (named[:, :60] == image).all() and named.shape[0] == 100  # the overlay is kept
    # more classes than the image has rows for: the panel grows, the image is padded white
    tall = with_legend(image[:20], mask[:20], colours)
    assert tall.shape[0] == 8 + 3 * 20 + 8 and (tall[20:, :60] == 255).all()
    assert named.shape[1] > by_id.shape[1] > 60  # the panel holds the names' text
    # the swatches are the classes' colours (BGR), largest class first
    assert named[8 + 7, 60 + 8 + 7].tolist() == [30, 20, 10]
    assert named[8 + 20 + 7, 60 + 8 + 7].tolist() == [200, 0, 0]


@pytest.mark.slow
def test_export_writes_names_and_palette_and_infer_legend_uses_them(tmp_path, custom_root):
    """tools/export.py on a custom config with a labels.txt: deploy.yaml (version 3) has the
    names and the config's palette; infer.py --legend draws those names beside the overlay."""
    import paddle

    (custom_root / "labels.txt").write_text("background\ncrack\nrust\n")
    config = custom_config(tmp_path, custom_root)
    paddle.seed(0)
    weights = tmp_path / "model.pdparams"
    paddle.save(Builder(_load(config)).model.state_dict(), str(weights))
    export = tmp_path / "export"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "export.py"), "--config", str(config),
         "--model_path", str(weights), "--save_dir", str(export)],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    deploy = yaml.safe_load((export / "deploy.yaml").read_text())["Deploy"]
    assert deploy["version"] == 3 and deploy["class_names"] == NAMES
    assert deploy["palette"] == [[0, 0, 0], [230, 25, 75], [60, 180, 75]]

    from deploy.python import infer

    out = tmp_path / "infer"
    image_dir = custom_root / "images"
    run = ["--export_dir", str(export), "--image_path", str(image_dir), "--print_detail", "False"]
    assert infer.main([*run, "--save_dir", str(out), "--legend"]) == 0
    for stem in ("0", "1"):
        mask = np.asarray(Image.open(out / f"{stem}.png"))
        image = cv2.imread(str(image_dir / f"{stem}.png"))
        drawn = cv2.imread(str(out / f"{stem}_overlay.jpg"))
        palette = deploy["palette"]
        expected = with_legend(overlay(image, mask, palette, 0.6), mask, palette, NAMES)
        assert drawn.shape == expected.shape  # the panel is as wide as the names need
        assert drawn.shape != with_legend(image, mask, palette).shape
        # JPEG is lossy; the drawing is the same up to its noise
        assert np.abs(drawn.astype(int) - expected.astype(int)).mean() < 4
    # without --legend: PaddleSeg's files, the overlay the image's size
    assert infer.main([*run, "--save_dir", str(tmp_path / "plain")]) == 0
    assert cv2.imread(str(tmp_path / "plain" / "0_overlay.jpg")).shape == (32, 32, 3)
