"""Dataset preparation: Cityscapes train ids from polygons, and the VOC 2012 + SBD trainaug set."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from paddle_stdc.data import prepare

from .conftest import ROOT

cs_labels = pytest.importorskip("cityscapesscripts.helpers.labels")


def _tool(name: str, *args: str) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "tools" / name), *args],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False, env=env,
    )  # fmt: skip


# --- Cityscapes -------------------------------------------------------------------------------

W, H = 64, 32


def _polygon_json(objects) -> dict:
    return {
        "imgHeight": H,
        "imgWidth": W,
        "objects": [{"label": name, "polygon": poly} for name, poly in objects],
    }


def _rect(x0, y0, x1, y1):
    return [[x0, y0], [x1, y0], [x1, y1], [x0, y1]]


SCENES = {
    ("train", "aachen", "aachen_000000_000019"): [
        ("road", _rect(0, 16, 63, 31)),
        ("car", _rect(10, 20, 20, 28)),  # drawn after road: on top
        ("sky", _rect(0, 0, 63, 6)),
    ],
    ("train", "bochum", "bochum_000000_000313"): [
        ("building", _rect(0, 0, 31, 31)),
        ("persongroup", _rect(40, 10, 50, 20)),  # "...group" maps to its class
        ("license plate", _rect(2, 2, 6, 6)),  # id -1: not drawn
    ],
    ("val", "frankfurt", "frankfurt_000000_000294"): [
        ("sidewalk", _rect(0, 0, 63, 31)),
        ("ego vehicle", _rect(0, 24, 63, 31)),  # trainId 255
    ],
}


def _make_cityscapes(root: Path) -> Path:
    for (split, city, stem), objects in SCENES.items():
        folder = root / "gtFine" / split / city
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{stem}_gtFine_polygons.json"
        path.write_text(json.dumps(_polygon_json(objects)))
    return root


def _trainid(name: str) -> int:
    return cs_labels.name2label[name].trainId


def test_cityscapes_label_table_comes_from_cityscapesscripts():
    assert (_trainid("road"), _trainid("car"), _trainid("unlabeled")) == (0, 13, 255)
    lut = prepare.cityscapes_trainid_lut()
    back = prepare.cityscapes_labelid_lut()
    for label in cs_labels.labels:
        if 0 <= label.trainId < 255 and label.id >= 0:
            assert lut[label.id] == label.trainId and back[label.trainId] == label.id
    assert lut[cs_labels.name2label["ego vehicle"].id] == 255
    assert back[255] == cs_labels.name2label["unlabeled"].id


def test_prepare_cityscapes_writes_trainids_and_is_idempotent(tmp_path):
    root = _make_cityscapes(tmp_path / "cityscapes")
    report = prepare.prepare_cityscapes(root, workers=2)
    assert report.ok and len(report.written) == 3 and not report.skipped, report.summary()

    a = np.asarray(
        Image.open(root / "gtFine/train/aachen/aachen_000000_000019_gtFine_labelTrainIds.png")
    )
    assert a.shape == (H, W) and a.dtype == np.uint8
    assert a[25, 40] == _trainid("road") == 0
    assert a[24, 15] == _trainid("car") == 13
    assert a[3, 30] == _trainid("sky") == 10
    assert a[10, 30] == _trainid("unlabeled") == 255  # not covered by any polygon

    b = np.asarray(
        Image.open(root / "gtFine/train/bochum/bochum_000000_000313_gtFine_labelTrainIds.png")
    )
    assert b[15, 45] == _trainid("person") == 11
    assert b[4, 4] == _trainid("building")  # license plate (id -1) is skipped
    c = np.asarray(
        Image.open(root / "gtFine/val/frankfurt/frankfurt_000000_000294_gtFine_labelTrainIds.png")
    )
    assert c[5, 5] == _trainid("sidewalk") and c[28, 5] == 255

    again = prepare.prepare_cityscapes(root, workers=2)
    assert again.ok and not again.written and len(again.skipped) == 3
    only_val = prepare.prepare_cityscapes(root, workers=1, overwrite=True, splits=["val"])
    assert len(only_val.written) == 1
    assert not list(root.rglob("*.tmp"))


def test_prepare_cityscapes_reports_a_bad_file_and_goes_on(tmp_path):
    root = _make_cityscapes(tmp_path / "cs")
    bad = root / "gtFine/val/frankfurt/frankfurt_000001_000000_gtFine_polygons.json"
    bad.write_text(json.dumps(_polygon_json([("not a label", _rect(0, 0, 5, 5))])))
    report = prepare.prepare_cityscapes(root, workers=1)
    assert not report.ok and len(report.written) == 3
    assert "not a label" in report.failed[0][1]
    with pytest.raises(FileNotFoundError):
        prepare.prepare_cityscapes(tmp_path / "nowhere")


@pytest.mark.slow
def test_prepare_cityscapes_tool(tmp_path):
    root = _make_cityscapes(tmp_path / "cs")
    first = _tool("prepare_cityscapes.py", "--root", str(root), "--workers", "2")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "wrote 3 file(s), 0 already up to date, 0 failed" in first.stdout
    assert "written per split: train 2, val 1" in first.stdout
    second = _tool("prepare_cityscapes.py", "--root", str(root), "--verbose")
    assert second.returncode == 0 and "wrote 0 file(s), 3 already up to date" in second.stdout
    assert "written per split: none" in second.stdout and "  wrote " not in second.stdout
    third = _tool("prepare_cityscapes.py", "--root", str(root), "--overwrite", "--verbose")
    assert third.stdout.count("  wrote ") == 3 and "labelTrainIds.png" in third.stdout


# --- Pascal VOC 2012 + SBD -------------------------------------------------------------------

VOC_TRAIN = ["2007_000032", "2007_000039", "2008_000002"]
VOC_VAL = ["2007_000033", "2008_000009"]
SBD_TRAIN = ["2008_000002", "2008_000003", "2007_000033", "2009_000001"]  # overlaps both VOC sets
SBD_VAL = ["2008_000004", "2008_000009", "2010_000005"]
EXPECTED = sorted(
    {
        "2007_000032",
        "2007_000039",
        "2008_000002",
        "2008_000003",
        "2009_000001",
        "2008_000004",
        "2010_000005",
    }
)


def _make_voc_sbd(root: Path):
    from scipy.io import savemat
    from scipy.sparse import csc_matrix

    voc = root / "VOCdevkit" / "VOC2012"
    sbd = root / "benchmark_RELEASE" / "dataset"
    for d in (
        voc / "JPEGImages",
        voc / "SegmentationClass",
        voc / "ImageSets/Segmentation",
        sbd / "cls",
    ):
        d.mkdir(parents=True)
    palette = np.zeros((256, 3), np.uint8)
    palette[:21] = np.random.RandomState(0).randint(0, 255, (21, 3))
    palette[255] = 224
    for i, name in enumerate(sorted(set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL))):
        Image.fromarray(np.full((12, 16, 3), i * 10, np.uint8)).save(
            voc / "JPEGImages" / f"{name}.jpg"
        )
    for i, name in enumerate(VOC_TRAIN + VOC_VAL):
        ids = np.zeros((12, 16), np.uint8)
        ids[2:6, 3:9] = i + 1
        ids[6, :] = 255  # VOC's object boundaries
        png = Image.fromarray(ids, mode="P")
        png.putpalette(palette.reshape(-1).tolist())
        png.save(voc / "SegmentationClass" / f"{name}.png")
    for i, name in enumerate(SBD_TRAIN + SBD_VAL):
        seg = np.zeros((12, 16), np.uint8)
        seg[4:10, 1:7] = (i % 20) + 1
        boundaries = np.empty((20, 1), object)  # SBD: a cell of sparse per-class edge maps
        for c in range(20):
            boundaries[c, 0] = csc_matrix(seg == c + 1)
        gt = {
            "Segmentation": seg,
            "Boundaries": boundaries,
            "CategoriesPresent": np.array([i % 20 + 1]),
        }
        savemat(str(sbd / "cls" / f"{name}.mat"), {"GTcls": gt})
    (voc / "ImageSets/Segmentation/train.txt").write_text("\n".join(VOC_TRAIN) + "\n")
    (voc / "ImageSets/Segmentation/val.txt").write_text("\n".join(VOC_VAL) + "\n")
    (sbd / "train.txt").write_text("\n".join(SBD_TRAIN) + "\n")
    (sbd / "val.txt").write_text("\n".join(SBD_VAL))
    return root / "VOCdevkit", root / "benchmark_RELEASE"


def test_trainaug_is_sbd_and_voc_train_minus_voc_val():
    assert prepare.trainaug_names(VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL) == EXPECTED


def test_count_check_expects_10582_for_the_released_lists():
    assert prepare.expected_trainaug_size(1464, 1449, 8498, 2857) == 10582
    assert prepare.expected_trainaug_size(3, 2, 4, 3) is None
    # Synthetic name lists of the released sizes: VOC train (1,464) and val (1,449) are
    # disjoint; SBD (8,498 + 2,857 = 11,355 names) holds 1,200 VOC val and 1,037 VOC train
    # images plus 9,118 others. (SBD ∪ VOC train) − VOC val = 1,464 + 9,118 = 10,582.
    voc_train = [f"t{i:05d}" for i in range(1464)]
    voc_val = [f"v{i:05d}" for i in range(1449)]
    in_val, in_train = voc_val[:1200], voc_train[:1037]
    others = [f"s{i:05d}" for i in range(8498 + 2857 - len(in_val) - len(in_train))]
    sbd_all = in_val + in_train + others
    sbd_train, sbd_val = sbd_all[:8498], sbd_all[8498:]
    assert (len(sbd_train), len(sbd_val), len(others)) == (8498, 2857, 9118)
    names, message = prepare.check_trainaug_counts(voc_train, voc_val, sbd_train, sbd_val)
    assert len(names) == 10582 and "10582" in message
    # A mismatching overlap (e.g. a wrong val list) is caught.
    with pytest.raises(ValueError, match="10582"):
        prepare.check_trainaug_counts(voc_train, [f"x{i}" for i in range(1449)], sbd_train, sbd_val)
    small, message = prepare.check_trainaug_counts(VOC_TRAIN, VOC_VAL, SBD_TRAIN, SBD_VAL)
    assert small == EXPECTED and "not checked" in message


def test_prepare_voc_aug_writes_pngs_and_lists(tmp_path):
    voc_root, sbd_root = _make_voc_sbd(tmp_path)
    report = prepare.prepare_voc_aug(voc_root, sbd_root, workers=2)
    assert report.ok, report.summary()
    voc = voc_root / "VOC2012"
    sets = voc / "ImageSets/Segmentation"
    assert prepare.read_name_list(sets / "trainaug.txt") == EXPECTED
    assert prepare.read_name_list(sets / "aug.txt") == [n for n in EXPECTED if n not in VOC_TRAIN]
    aug = voc / "SegmentationClassAug"
    everything = set(VOC_TRAIN + VOC_VAL + SBD_TRAIN + SBD_VAL)
    assert {p.stem for p in aug.glob("*.png")} == everything
    # VOC's own annotation wins over SBD's (2008_000002 is in both) and keeps its 255 borders.
    voc_ids = np.asarray(Image.open(voc / "SegmentationClass" / "2008_000002.png"))
    got = Image.open(aug / "2008_000002.png")
    assert got.mode == "L"
    np.testing.assert_array_equal(np.asarray(got), voc_ids)
    assert 255 in np.asarray(got)
    # SBD-only images come from GTcls.Segmentation.
    k = (SBD_TRAIN + SBD_VAL).index("2010_000005")
    sbd_ids = np.asarray(Image.open(aug / "2010_000005.png"))
    assert set(np.unique(sbd_ids).tolist()) == {0, k % 20 + 1} and sbd_ids[5, 2] == k % 20 + 1

    again = prepare.prepare_voc_aug(voc_root, sbd_root, workers=1)
    assert again.ok and not again.written

    # PaddleSeg's PascalVOC(mode='trainaug') reads train.txt + aug.txt: the trainaug set, once.
    from paddleseg.datasets import PascalVOC

    ds = PascalVOC(transforms=[], dataset_root=str(voc_root), mode="trainaug")
    assert sorted(Path(img).stem for img, _ in ds.file_list) == EXPECTED


@pytest.mark.slow
def test_prepare_voc_aug_tool_and_missing_inputs(tmp_path):
    voc_root, sbd_root = _make_voc_sbd(tmp_path)
    proc = _tool("prepare_voc_aug.py", "--voc_root", str(voc_root), "--sbd_root", str(sbd_root))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "trainaug 7" in proc.stdout and "trainaug.txt: 7 names" in proc.stdout
    (voc_root / "VOC2012/JPEGImages/2010_000005.jpg").unlink()
    with pytest.raises(FileNotFoundError, match="2010_000005"):
        prepare.prepare_voc_aug(voc_root, sbd_root)
    with pytest.raises(FileNotFoundError):
        prepare.prepare_voc_aug(tmp_path / "nowhere", sbd_root)


# --- custom datasets and palettes ------------------------------------------------------------


def _make_custom(root: Path, n=5) -> Path:
    rng = np.random.RandomState(0)
    for i in range(n):
        sub = "a" if i % 2 else "b"  # nested folders pair by relative path
        (root / "images" / sub).mkdir(parents=True, exist_ok=True)
        (root / "labels" / sub).mkdir(parents=True, exist_ok=True)
        img = rng.randint(0, 255, (40, 60, 3)).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / sub / f"{i:04d}.jpg")
        label = np.zeros((40, 60), np.uint8)
        label[10:30, 20:50] = 1
        label[0] = 255
        Image.fromarray(label).save(root / "labels" / sub / f"{i:04d}.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / "a" / "orphan.jpg")
    return root


def test_write_file_lists_pairs_by_relative_path(tmp_path):
    root = _make_custom(tmp_path / "my_dataset")
    report = prepare.write_file_lists(root, val_fraction=0.25, seed=1)
    assert [p.name for p in report.written] == ["val.txt", "train.txt"]
    assert len(report.failed) == 1 and "orphan" in str(report.failed[0][0])
    train = (root / "train.txt").read_text().splitlines()
    val = (root / "val.txt").read_text().splitlines()
    assert (len(train), len(val)) == (4, 1)
    for line in train + val:
        img, lbl = line.split(" ")
        assert Path(img).stem == Path(lbl).stem and img.split("/")[1] == lbl.split("/")[1]
        assert (root / img).is_file() and (root / lbl).is_file()
    assert not prepare.write_file_lists(root, val_fraction=0.25, seed=1).written  # idempotent


def test_custom_dataset_config_trains_on_file_lists(tmp_path):
    from paddle_stdc.data.palettes import palette_for
    from paddle_stdc.data.transforms import Normalize
    from paddle_stdc.engine.config import Builder, load_config

    root = _make_custom(tmp_path / "my_dataset")
    prepare.write_file_lists(root, val_fraction=0.4)
    config = ROOT / "configs" / "custom" / "stdc1_seg_custom_512x512.yml"
    opts = [
        f"train_dataset.dataset_root={root}",
        f"train_dataset.train_path={root / 'train.txt'}",
        f"val_dataset.dataset_root={root}",
        f"val_dataset.val_path={root / 'val.txt'}",
    ]
    cfg = load_config(str(config), opts=opts, pretrained=False)
    cfg.dic["train_dataset"]["transforms"][1]["crop_size"] = [48, 32]  # small, for speed
    assert cfg.dic["train_dataset"]["type"] == "Dataset"
    builder = Builder(cfg)
    assert builder.model.num_classes == 2
    train, val = builder.train_dataset, builder.val_dataset
    assert (len(train), len(val)) == (3, 2)
    sample = train[0]
    assert sample["img"].shape == (3, 32, 48) and sample["img"].dtype == np.float32
    assert set(np.unique(sample["label"]).tolist()) <= {0, 1, 255}
    assert isinstance(builder.val_transforms[-1], Normalize)
    assert val[0]["img"].shape == (3, 40, 60)
    palette = palette_for(2, cfg.val_dataset_cfg["type"], cfg.dic.get("palette"))
    assert palette.tolist() == [[0, 0, 0], [230, 25, 75]]


def test_palettes(tmp_path):
    from paddle_stdc.data import palettes

    assert palettes.palette_for(19, "Cityscapes") is palettes.CITYSCAPES_PALETTE
    assert palettes.palette_for(19) is palettes.CITYSCAPES_PALETTE
    voc = palettes.palette_for(21, "PascalVOC")
    assert (
        voc.shape == (256, 3)
        and voc[1].tolist() == [128, 0, 0]
        and voc[15].tolist() == [192, 128, 128]
    )
    np.testing.assert_array_equal(palettes.palette_for(19, "Dataset"), voc)  # generic: VOC's
    assert len({tuple(c) for c in voc}) == 256  # distinct, deterministic
    with pytest.raises(ValueError):  # 19 Cityscapes colours cannot colour 21 classes
        palettes.palette_for(21, "Dataset", "cityscapes")
    (tmp_path / "p.json").write_text("[[1, 2, 3], [4, 5, 6]]")
    (tmp_path / "p.txt").write_text("1 2 3\n4 5 6\n")
    for spec in (tmp_path / "p.json", str(tmp_path / "p.txt"), [[1, 2, 3], [4, 5, 6]]):
        assert palettes.load_palette(spec).tolist() == [[1, 2, 3], [4, 5, 6]]
    assert palettes.load_palette("VOC")[1].tolist() == [128, 0, 0]
    with pytest.raises(ValueError, match="colours for 3 classes"):
        palettes.palette_for(3, "Dataset", [[1, 2, 3], [4, 5, 6]])
    with pytest.raises(ValueError):
        palettes.load_palette([[1, 2, 300]])
    with pytest.raises(ValueError):
        palettes.load_palette("no-such-palette")
    assert palettes.class_names_for(21, "PascalVOC")[15] == "person"
    assert palettes.class_names_for(19)[13] == "car" and palettes.class_names_for(2) is None
    from paddle_stdc.utils import visualize

    assert visualize.palette_for is palettes.palette_for  # the old import path still works


def test_predict_tool_takes_a_palette_flag():
    import importlib.util

    spec = importlib.util.spec_from_file_location("predict_tool", ROOT / "tools" / "predict.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    base = ["--config", "c.yml", "--model_path", "m.pdparams", "--image_path", "imgs"]
    assert tool.parse_args(base).palette is None
    assert tool.parse_args([*base, "--palette", "voc"]).palette == "voc"
