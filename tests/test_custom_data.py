"""Your own data: label padding follows ignore_index, label values are checked before the loss,
list preparation (random split, pre-split, ownership), and the CamVid-like config trains."""

from __future__ import annotations

import importlib.util
import inspect
import json
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager
from PIL import Image

import paddle_stdc  # noqa: F401  (registrations)
from paddle_stdc.data import prepare
from paddle_stdc.data.datasets import DataError, Dataset
from paddle_stdc.data.loading import check_batch_labels
from paddle_stdc.data.synthetic import CAMVID_VOID, make_synthetic_camvid
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.validate import ConfigError, fill_label_padding, validate_config

from .conftest import ROOT

CAMVID_CONFIG = ROOT / "configs" / "custom" / "stdc1_seg_camvid_480x360.yml"
SPLITS = {s: (s, f"{s}annot") for s in ("train", "val", "test")}  # CamVid's folders
#: Every registered transform that pads labels (PaddleSeg 2.8's and ours).
PADDING_TRANSFORMS = sorted(
    name for name, cls in manager.TRANSFORMS.components_dict.items()
    if "label_padding_value" in inspect.signature(cls.__init__).parameters
)  # fmt: skip


def _tool(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "tools" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def camvid(tmp_path_factory) -> Path:
    """A tiny CamVid-like dataset (void = 11) with its lists in lists/."""
    root = tmp_path_factory.mktemp("camvid")
    make_synthetic_camvid(root, {"train": 4, "val": 2, "test": 2}, size=(64, 48))
    prepare.write_split_lists(root, SPLITS, list_dir=root / "lists")
    return root


def _camvid_opts(root: Path, val_list: str = "val.txt") -> list:
    return [
        f"train_dataset.dataset_root={root}", f"train_dataset.train_path={root}/lists/train.txt",
        f"val_dataset.dataset_root={root}", f"val_dataset.val_path={root}/lists/{val_list}",
    ]  # fmt: skip


def _with_transforms(cfg, transforms: list):
    cfg.dic["train_dataset"]["transforms"] = transforms
    return cfg


# --- label padding ---------------------------------------------------------------------------


def test_every_padding_transform_is_known():
    assert {"RandomPaddingCrop", "Padding", "RandomAffine", "RandomRotation", "ScalePadding",
            "PaddingByAspectRatio"} <= set(PADDING_TRANSFORMS)  # fmt: skip


@pytest.mark.parametrize("name", PADDING_TRANSFORMS)
def test_padding_defaults_to_the_dataset_ignore_index(camvid, name):
    cfg = load_config(str(CAMVID_CONFIG), opts=_camvid_opts(camvid), pretrained=False)
    args = {"Padding": {"target_size": [64, 64]}, "PaddingByAspectRatio": {},
            "ScalePadding": {"target_size": [64, 64]}}.get(name, {})  # fmt: skip
    _with_transforms(cfg, [{"type": name, **args}, {"type": "Normalize"}])
    validate_config(cfg)
    assert cfg.dic["train_dataset"]["transforms"][0]["label_padding_value"] == CAMVID_VOID
    transform = Builder(cfg).train_dataset.transforms.transforms[0]
    assert transform.label_padding_value == CAMVID_VOID


def test_shipped_camvid_config_pads_with_void_and_loss_ignores_it(camvid):
    cfg = load_config(str(CAMVID_CONFIG), opts=_camvid_opts(camvid), pretrained=False)
    assert "label_padding_value" not in str(CAMVID_CONFIG.read_text().split("transforms:")[1])
    fills = fill_label_padding(cfg.dic)
    assert [(f.key, f.value) for f in fills] == [
        ("train_dataset.transforms[1].label_padding_value", 11)
    ]
    assert cfg.dic["train_dataset"]["transforms"][1]["ignore_index"] == 11  # category_max_ratio
    assert {t["ignore_index"] for t in cfg.dic["loss"]["types"]} == {11}  # PaddleSeg's rule
    # Cityscapes: the class's ignore index, 255.
    city_config = ROOT / "configs" / "stdc1_seg_cityscapes_1024x512_80k.yml"
    city = load_config(str(city_config), pretrained=False)
    assert [f.value for f in fill_label_padding(city.dic)] == [255]


@pytest.mark.parametrize(
    "value,ok", [(255, False), (12, False), (-1, False), (11, True), (0, True), (10, True)]
)
def test_padding_value_must_be_a_class_or_the_ignore_index(camvid, value, ok):
    cfg = load_config(str(CAMVID_CONFIG), opts=_camvid_opts(camvid), pretrained=False)
    crop = {"type": "RandomPaddingCrop", "crop_size": [96, 96], "label_padding_value": value}
    _with_transforms(cfg, [crop, {"type": "Normalize"}])
    if ok:
        validate_config(cfg)
        return
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    text = str(err.value)
    assert text.startswith(f"train_dataset.transforms[0].label_padding_value: {value} ")
    assert "0..10" in text and "ignore_index 11" in text and "\n" not in text


def test_a_dataset_built_without_the_config_refuses_bad_padding(camvid):
    from paddle_stdc.data.transforms import Normalize, RandomPaddingCrop

    transforms = [RandomPaddingCrop(crop_size=(96, 96)), Normalize()]  # pads with 255
    train_path = str(camvid / "lists" / "train.txt")
    with pytest.raises(DataError, match=r"RandomPaddingCrop pads labels with 255.*0\.\.10.*11"):
        Dataset("train", str(camvid), transforms, 11, train_path=train_path, ignore_index=11)
    transforms = [RandomPaddingCrop(crop_size=(96, 96), label_padding_value=11), Normalize()]
    ok = Dataset("train", str(camvid), transforms, 11, train_path=train_path, ignore_index=11)
    label = ok[0]["label"]
    assert label.shape == (96, 96) and (label[48:] == 11).all()  # the padded rows are void


class _AddsValue:
    """A transform that writes 200 into the label, as a buggy augmentation might."""

    def __call__(self, data):
        data["label"] = data["label"].copy()
        data["label"][0, 0] = 200
        return data


def test_a_value_a_transform_adds_is_an_error_naming_the_file(camvid):
    from paddle_stdc.data.transforms import Normalize

    ds = Dataset("train", str(camvid), [_AddsValue(), Normalize()], 11,
                 train_path=str(camvid / "lists/train.txt"), ignore_index=11)  # fmt: skip
    with pytest.raises(DataError) as err:
        ds[0]
    assert ds.file_list[0][1] in str(err.value) and "values 200" in str(err.value)
    assert "after the transforms" in str(err.value)


def test_batch_check_names_the_values_and_the_range():
    labels = np.zeros((2, 4, 4), np.uint8)
    labels[0, 0, 0] = 11
    check_batch_labels(paddle.to_tensor(labels), 11, 11, "batch")  # void is fine
    labels[1, 1, 1] = 255
    expected = r"batch: label values 255 outside \[0, 11\) and ignore_index 11"
    with pytest.raises(DataError, match=expected):
        check_batch_labels(paddle.to_tensor(labels), 11, 11, "batch")
    wide = labels.astype(np.int64)
    wide[0, 0, 1] = -3
    with pytest.raises(DataError, match=r"label values -3, 255 outside"):
        check_batch_labels(wide, 11, 11, "batch")
    check_batch_labels(np.arange(11, dtype=np.int64), 11, 255, "batch")


class _Unchecked(paddle.io.Dataset):
    """A dataset that does not check its labels, with a value the loss kernel cannot take."""

    num_classes, ignore_index = 11, 11

    def __len__(self):
        return 4

    def __getitem__(self, i):
        label = np.full((32, 32), 3, np.uint8)
        label[0, :4] = 255
        return {"img": np.zeros((3, 32, 32), np.float32), "label": label}


def test_training_on_an_unchecked_dataset_stops_before_the_loss(camvid, tmp_path):
    from paddle_stdc.engine.trainer import TrainOptions, train

    cfg = load_config(str(CAMVID_CONFIG), opts=_camvid_opts(camvid), pretrained=False)
    cfg.dic.update(iters=1, batch_size=2)
    builder = Builder(cfg)
    builder.__dict__["train_dataset"] = _Unchecked()
    with pytest.raises(DataError, match=r"iteration 1: label values 255 outside \[0, 11\)"):
        train(builder, TrainOptions(save_dir=str(tmp_path / "out"), seed=0))


def test_check_dataset_tool_reports_padding_and_allowed_values(camvid, tmp_path, capsys):
    tool = _tool("check_dataset")
    base = ["--config", str(CAMVID_CONFIG), "--num_workers", "1", "--opts", *_camvid_opts(camvid)]
    assert tool.main(base) == 0
    out = capsys.readouterr().out
    assert "label values allowed: 0..10, ignore_index 11" in out
    assert "RandomPaddingCrop pads labels with 11 (the dataset's ignore_index)" in out
    bad = tmp_path / "bad.yml"
    crop = "{type: RandomPaddingCrop, crop_size: [96, 96], label_padding_value: 255}"
    bad.write_text(f"_base_: {CAMVID_CONFIG}\ntrain_dataset:\n  transforms:\n"
                   f"    - {crop}\n    - {{type: Normalize}}\n")  # fmt: skip
    assert tool.main(["--config", str(bad), *base[2:]]) == 1
    out = capsys.readouterr().out
    assert "! train_dataset.transforms[0].label_padding_value: 255 is neither" in out


# --- list preparation ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n,val,test,expected",
    [(5, 0.25, 0, (1, 0)), (5, 0, 0, (0, 0)), (5, 1, 0, (5, 0)), (5, 0, 1, (0, 5)),
     (1, 0.2, 0, (0, 0)), (1, 1, 0, (1, 0)), (10, 0.2, 0.1, (2, 1)), (4, 0.5, 0.5, (2, 2)),
     (3, 0.01, 0.01, (1, 1)), (100, 0.2, 0.1, (20, 10))],
)  # fmt: skip
def test_split_sizes_honour_the_bounds(n, val, test, expected):
    assert prepare.split_sizes(n, val, test) == expected


@pytest.mark.parametrize("val,test", [(-0.1, 0), (1.1, 0), (0.6, 0.5)])
def test_split_sizes_refuse_impossible_fractions(val, test):
    with pytest.raises(ValueError, match="fraction"):
        prepare.split_sizes(10, val, test)


def _flat(root: Path, n: int = 6) -> Path:
    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    for i in range(n):
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(root / "images" / f"{i}.jpg")
        Image.fromarray(np.zeros((8, 8), np.uint8)).save(root / "labels" / f"{i}.png")
    return root


def _lines(path: Path) -> list:
    return path.read_text().splitlines() if path.exists() else []


@pytest.mark.parametrize("val,counts", [(0, (6, 0)), (1, (0, 6)), (0.5, (3, 3))])
def test_flat_lists_at_the_bounds(tmp_path, val, counts):
    root = _flat(tmp_path / "d")
    report = prepare.write_file_lists(root, val_fraction=val)
    assert (len(_lines(root / "train.txt")), len(_lines(root / "val.txt"))) == counts
    assert report.ok and not (root / "test.txt").exists()
    if val == 0:
        assert "val.txt: 0 pairs, not written" in report.summary()


def test_flat_lists_with_test_split_in_another_dir(tmp_path):
    root = _flat(tmp_path / "d", n=10)
    prepare.write_file_lists(root, val_fraction=0.2, test_fraction=0.1, list_dir=tmp_path / "l")
    lists = {n: _lines(tmp_path / "l" / f"{n}.txt") for n in ("train", "val", "test")}
    assert {n: len(v) for n, v in lists.items()} == {"train": 7, "val": 2, "test": 1}
    assert len(set(sum(lists.values(), []))) == 10  # disjoint, complete
    assert all((root / p).is_file() for line in lists["test"] for p in line.split(" "))
    assert not (root / "train.txt").exists()


def test_pre_split_lists_and_ownership(camvid, tmp_path):
    lists = camvid / "lists"
    assert [len(_lines(lists / f"{n}.txt")) for n in ("train", "val", "test")] == [4, 2, 2]
    assert _lines(lists / "val.txt")[0] == "val/synth_val_0000.png valannot/synth_val_0000.png"
    # CamVid's own lists (foreign absolute paths) are never replaced without --overwrite ...
    shipped = (camvid / "train.txt").read_text()
    with pytest.raises(FileExistsError, match=r"train\.txt.*not written by this tool"):
        prepare.write_split_lists(camvid, SPLITS)
    assert (camvid / "train.txt").read_text() == shipped and shipped.startswith("/SegNet")
    # ... our own are replaced (here: a split dropped, its list removed) ...
    report = prepare.write_split_lists(camvid, {"train": SPLITS["train"]}, list_dir=tmp_path)
    manifest = json.loads((tmp_path / prepare.LIST_MANIFEST).read_text())
    assert set(manifest["files"]) == {"train.txt"} and report.written == [tmp_path / "train.txt"]
    (tmp_path / "train.txt").write_text("edited by hand\n")  # ... unless edited since
    with pytest.raises(FileExistsError):
        prepare.write_split_lists(camvid, {"train": SPLITS["train"]}, list_dir=tmp_path)
    only_train = {"train": SPLITS["train"]}
    prepare.write_split_lists(camvid, only_train, list_dir=tmp_path, overwrite=True)
    assert len(_lines(tmp_path / "train.txt")) == 4


def test_own_empty_list_is_removed_foreign_one_kept(tmp_path):
    root = _flat(tmp_path / "d")
    prepare.write_file_lists(root, val_fraction=0.5)
    report = prepare.write_file_lists(root, val_fraction=0)
    assert not (root / "val.txt").exists() and "removed" in report.summary()
    (root / "val.txt").write_text("mine\n")
    prepare.write_file_lists(root, val_fraction=0)
    assert (root / "val.txt").read_text() == "mine\n"


def test_prepare_tool_one_line_errors_and_split_flag(camvid, tmp_path, capsys):
    tool = _tool("prepare_dataset")
    assert tool.main(["--root", str(camvid), "--split", "train=train:trainannot"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "--overwrite" in err
    assert tool.main(["--root", str(camvid), "--list_dir", str(tmp_path),
                      "--split", "val=val:valannot", "test=test:testannot"]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.glob("*.txt")) == ["test.txt", "val.txt"]
    with pytest.raises(SystemExit):
        tool.parse_args(["--root", "x", "--split", "train"])
    assert "NAME=IMAGES:LABELS" in capsys.readouterr().err


# --- the CamVid-like config trains -----------------------------------------------------------


@pytest.mark.slow
def test_camvid_config_trains_with_void_11(camvid, tmp_path):
    """The shipped config, without label_padding_value, on generated data with labels 0..11:
    crops larger than the images are padded with 11 and the losses ignore it."""
    from paddle_stdc.engine.trainer import TrainOptions, train

    cfg = load_config(str(CAMVID_CONFIG), opts=_camvid_opts(camvid), pretrained=False)
    transforms = cfg.dic["train_dataset"]["transforms"]
    assert [t["type"] for t in transforms][:2] == ["ResizeStepScaling", "RandomPaddingCrop"]
    transforms[1]["crop_size"] = [128, 96]  # larger than the 64x48 images at scale 1.5: padded
    cfg.dic.update(iters=3, batch_size=2)
    builder = Builder(cfg)
    sample = builder.train_dataset[0]["label"]
    assert CAMVID_VOID in np.unique(sample) and sample.max() == CAMVID_VOID
    result = train(builder, TrainOptions(save_dir=str(tmp_path / "out"), seed=0, do_eval=True,
                                         save_interval=3))  # fmt: skip
    assert result.state.iteration == 3
    metrics = result.last_eval.metrics
    assert len(metrics.class_iou) == 11  # void is not a class
    assert 0.0 <= result.last_eval.miou <= 1.0 and np.isfinite(result.last_eval.miou)
