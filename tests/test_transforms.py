"""Fast uint8 transforms keep PaddleSeg 2.8's semantics: same draws, same labels, close pixels."""

from __future__ import annotations

import random

import cv2
import numpy as np
import paddleseg.transforms as pst
import pytest
from paddleseg.cvlibs import manager
from PIL import Image, ImageEnhance

import paddle_stdc  # noqa: F401  (registers the transforms)
from paddle_stdc.data import transforms as T
from paddle_stdc.engine.config import Builder, load_config

NAMES = ("ResizeStepScaling", "RandomPaddingCrop", "RandomHorizontalFlip", "RandomDistort")


def _image(h=96, w=192, seed=0) -> np.ndarray:
    rng = np.random.RandomState(seed)
    img = (rng.rand(h, w, 3) * 255).astype(np.uint8)
    return cv2.GaussianBlur(img, (5, 5), 2)  # natural-ish: smooth colours, not pure noise


def _label(h=96, w=192, seed=0, values=(0, 3, 7, 13)) -> np.ndarray:
    rng = np.random.RandomState(seed + 1)
    return np.asarray(values, dtype=np.uint8)[rng.randint(len(values), size=(h, w))]


def _sample(img=None, label=None):
    img = _image() if img is None else img
    label = _label() if label is None else label
    return {"img": img.astype(np.float32), "label": label.copy(), "gt_fields": ["label"]}


def _train_ops(mod, crop=(128, 64)):
    return [
        mod.ResizeStepScaling(min_scale_factor=0.5, max_scale_factor=2.0, scale_step_size=0.25),
        mod.RandomPaddingCrop(crop_size=list(crop)),
        mod.RandomHorizontalFlip(),
        mod.RandomDistort(brightness_range=0.4, contrast_range=0.4, saturation_range=0.4),
    ]


def _run(ops, data):
    for op in ops:
        data = op(data)
    return data


def _seed(seed):
    random.seed(seed)
    np.random.seed(seed)


def test_registered_over_paddleseg_names():
    for name in (*NAMES, "Normalize"):
        assert manager.TRANSFORMS[name] is getattr(T, name)


def test_cityscapes_config_builds_our_transforms():
    cfg = load_config("configs/stdc1_seg_cityscapes_1024x512_80k.yml", pretrained=False)
    builder = Builder(cfg)
    built = [builder.build_component(t) for t in cfg.train_dataset_cfg["transforms"]]
    assert [type(t) for t in built] == [getattr(T, n) for n in NAMES] + [T.Normalize]
    distort = built[3]
    assert distort.brightness_range == distort.contrast_range == distort.saturation_range == 0.4


@pytest.mark.parametrize("sharpness_prob", [0.0, 0.5])
def test_same_seed_same_geometry_and_labels_as_paddleseg(sharpness_prob):
    img, label = _image(), _label()
    worst_mean = 0.0
    for seed in range(12):
        outs = []
        for mod in (pst, T):
            _seed(seed)
            ops = _train_ops(mod)
            ops[3].sharpness_prob = sharpness_prob
            outs.append(_run(ops, _sample(img, label)))
        ref, ours = outs
        assert ours["img"].dtype == np.uint8 and ours["img"].shape == ref["img"].shape
        # Labels go through the same nearest-neighbour calls: identical, bit for bit.
        np.testing.assert_array_equal(ours["label"], ref["label"])
        diff = np.abs(ours["img"].astype(np.float64) - ref["img"])
        assert diff.max() <= 8, (seed, diff.max())
        worst_mean = max(worst_mean, diff.mean())
    assert worst_mean < 1.0  # on average within a grey level of PaddleSeg's float/PIL path


def test_output_shapes_and_label_values():
    label = _label(values=(1, 2, 11))
    allowed = {1, 2, 11, 255}
    ops = _train_ops(T, crop=(160, 120)) + [T.Normalize()]
    compose = pst.Compose(ops)
    _seed(3)
    for _ in range(20):
        out = compose(_sample(label=label))
        assert out["img"].shape == (3, 120, 160) and out["img"].dtype == np.float32
        assert out["label"].shape == (120, 160) and out["label"].dtype == np.uint8
        assert set(np.unique(out["label"]).tolist()) <= allowed
        assert -1.0 - 1e-6 <= out["img"].min() and out["img"].max() <= 1.0 + 1e-6


def test_scale_distribution_covers_the_configured_steps():
    op = T.ResizeStepScaling(min_scale_factor=0.5, max_scale_factor=2.0, scale_step_size=0.25)
    steps = [0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0]
    np.random.seed(0)
    draws = np.array([op.draw_scale() for _ in range(7000)])
    assert set(np.round(draws, 6).tolist()) == set(steps)
    freq = np.array([(np.isclose(draws, s)).mean() for s in steps])
    # 1000 expected per step, binomial sd ~ 29: 6 sd of slack.
    assert np.all(np.abs(freq - 1 / 7) < 0.025), freq
    # The output size follows the drawn factor, for image and label alike.
    h, w = 40, 60
    for _ in range(30):
        state = np.random.get_state()
        scale = op.draw_scale()
        np.random.set_state(state)
        out = op({"img": np.zeros((h, w, 3), np.uint8), "label": np.zeros((h, w), np.uint8),
                  "gt_fields": ["label"]})  # fmt: skip
        expected = (int(round(scale * h)), int(round(scale * w)))
        assert out["img"].shape[:2] == expected and out["label"].shape == expected


def test_uniform_scale_when_step_is_zero():
    op = T.ResizeStepScaling(0.5, 2.0, 0.0)
    np.random.seed(1)
    draws = np.array([op.draw_scale() for _ in range(2000)])
    assert draws.min() >= 0.5 and draws.max() <= 2.0
    assert abs(draws.mean() - 1.25) < 0.03 and len(np.unique(draws)) > 1900
    assert T.ResizeStepScaling(1.0, 1.0).draw_scale() == 1.0
    with pytest.raises(ValueError):
        T.ResizeStepScaling(2.0, 1.0)


def test_flip_frequency_and_equality_with_paddleseg():
    op = T.RandomHorizontalFlip()
    img, label = _image(), _label()
    random.seed(0)
    flips = 0
    n = 4000
    for _ in range(n):
        out = op({"img": img, "label": label, "gt_fields": ["label"]})
        flips += int(not np.array_equal(out["img"], img))
    # Binomial(4000, 0.5): sd ~ 0.008; allow 5 sd.
    assert abs(flips / n - 0.5) < 0.04
    for seed in range(6):
        random.seed(seed)
        ref = pst.RandomHorizontalFlip()(_sample(img, label))
        random.seed(seed)
        ours = T.RandomHorizontalFlip()(_sample(img, label))
        np.testing.assert_array_equal(ours["img"], ref["img"])
        np.testing.assert_array_equal(ours["label"], ref["label"])
    assert T.RandomHorizontalFlip(prob=0.0)(_sample(img, label))["img"] is not None
    wide = {"img": img, "label": label.astype(np.int64), "gt_fields": ["label"]}
    out = T.RandomHorizontalFlip(prob=1.0)(wide)  # int64 labels: no OpenCV kernel, numpy flip
    np.testing.assert_array_equal(out["label"], label[:, ::-1])


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
@pytest.mark.parametrize("mean_std", [None, ([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
def test_normalize_equals_paddleseg(dtype, mean_std):
    kwargs = {} if mean_std is None else {"mean": mean_std[0], "std": mean_std[1]}
    img = _image().astype(dtype)
    ref = pst.Normalize(**kwargs)({"img": img.astype(np.float32)})["img"]
    ours = T.Normalize(**kwargs)({"img": img.copy()})["img"]
    assert ours.dtype == np.float32 and ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=0, atol=1e-5)
    gray = img[..., 0]
    np.testing.assert_allclose(
        T.Normalize()({"img": gray.copy()})["img"],
        pst.Normalize()({"img": gray.astype(np.float32)})["img"],
        atol=1e-5,
    )
    with pytest.raises(ValueError):
        T.Normalize(mean=[0.5], std=[0.0])


def _pil_hue(im, delta):
    hsv = np.array(im.convert("HSV"))
    hsv[:, :, 0] = hsv[:, :, 0] + delta
    return Image.fromarray(hsv, mode="HSV").convert("RGB")


@pytest.mark.parametrize("factor", [0.6, 0.95, 1.4])
def test_colour_ops_match_pil(factor):
    img = _image(64, 96, seed=5)
    pil = Image.fromarray(img)
    exact = {T._brightness: ImageEnhance.Brightness, T._contrast: ImageEnhance.Contrast}
    for ours, enhancer in exact.items():
        np.testing.assert_array_equal(ours(img, factor), np.asarray(enhancer(pil).enhance(factor)))
    for ours, enhancer in {
        T._saturation: ImageEnhance.Color,
        T._sharpness: ImageEnhance.Sharpness,
    }.items():  # noqa: E501
        diff = np.abs(ours(img, factor).astype(int) - np.asarray(enhancer(pil).enhance(factor)))
        assert diff.max() <= 1
    delta = (factor - 1) * 40  # -16 .. 16 on PIL's 0-255 hue circle
    diff = np.abs(T._hue(img, delta).astype(int) - np.asarray(_pil_hue(pil, delta)).astype(int))
    assert diff.max() <= 6 and diff.mean() < 0.5


def test_distort_draws_like_paddleseg():
    op = T.RandomDistort(brightness_range=0.4, contrast_range=0.4, saturation_range=0.4)
    _seed(7)
    plans = [op.plan(is_color=True) for _ in range(3000)]
    for name in ("brightness", "contrast", "saturation", "hue"):
        taken = [f for p in plans for n, f in p if n == name]
        assert abs(len(taken) / len(plans) - 0.5) < 0.04, name
        lo, hi = (-18, 18) if name == "hue" else (0.6, 1.4)
        assert lo <= min(taken) and max(taken) <= hi
    assert not any(n == "sharpness" for p in plans for n, _ in p)  # sharpness_prob 0
    gray = T.RandomDistort(hue_prob=1.0)
    assert all(n != "hue" for _ in range(50) for n, _ in gray.plan(is_color=False))
    out = gray({"img": _image()[..., 0].astype(np.float32)})
    assert out["img"].dtype == np.uint8 and out["img"].ndim == 2


def test_padding_crop_pads_with_ignore_and_grey():
    op = T.RandomPaddingCrop(crop_size=[100, 80])
    img, label = _image(50, 60), _label(50, 60)
    out = op({"img": img, "label": label, "gt_fields": ["label"]})
    assert out["img"].shape == (80, 100, 3) and out["label"].shape == (80, 100)
    np.testing.assert_array_equal(out["img"][:50, :60], img)
    assert (out["img"][50:] == 128).all() and (out["img"][:, 60:] == 128).all()
    assert (out["label"][50:] == 255).all() and (out["label"][:, 60:] == 255).all()
    same = T.RandomPaddingCrop(crop_size=[60, 50])({"img": img, "label": label})
    assert same["img"] is img
    with pytest.raises(ValueError):
        T.RandomPaddingCrop(crop_size=[1, 2, 3])
    with pytest.raises(TypeError):
        T.RandomPaddingCrop(crop_size=512)


def test_padding_crop_category_max_ratio_crops_image_and_label_together():
    label = np.zeros((80, 160), np.uint8)
    label[:, 80:] = 5  # crops inside one half hold a single class and are rejected
    img = _image(80, 160)
    op = T.RandomPaddingCrop(crop_size=[40, 40], category_max_ratio=0.9, loop_times=50)
    np.random.seed(0)
    for _ in range(10):
        out = op({"img": img, "label": label, "gt_fields": ["label"]})
        assert out["img"].shape == (40, 40, 3) and out["label"].shape == (40, 40)
        counts = np.bincount(out["label"].ravel())
        assert counts.max() / counts.sum() < 0.9
        # The image window is the label window.
        ys, xs = np.nonzero(out["label"] == 5)
        assert len(xs) > 0


def test_float_image_out_of_8bit_range_stays_float():
    img = np.random.RandomState(0).randn(40, 60, 3).astype(np.float32)  # already normalised
    data = {"img": img, "label": _label(40, 60), "gt_fields": ["label"]}
    data = T.ResizeStepScaling(2.0, 2.0)(data)
    data = T.RandomPaddingCrop(crop_size=[50, 30])(data)
    assert data["img"].dtype == np.float32 and data["img"].min() < 0
    assert data["img"].shape == (30, 50, 3)
    assert T.to_uint8(np.array([[0.4, 254.6]], np.float32)).tolist() == [[0, 255]]


@pytest.mark.slow
def test_pipeline_benchmark_runs_and_readme_has_its_table():
    import subprocess
    import sys

    from .conftest import ROOT

    readme = (ROOT / "docs" / "data.md").read_text()
    begin = "<!-- pipeline:begin (generated by tools/benchmark_pipeline.py) -->"
    assert begin in readme and "<!-- pipeline:end -->" in readme
    block = readme[readme.index(begin) : readme.index("<!-- pipeline:end -->")]
    assert "2048x1024" in block and "| transforms (decoded" in block  # the default, measured
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tools" / "benchmark_pipeline.py"), "--no_readme",
         "--size", "128", "64", "--count", "1", "--rounds", "1"],
        cwd=ROOT, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "x |" in line]
    assert len(rows) == 2, proc.stdout  # transforms; end to end
    assert (ROOT / "docs" / "data.md").read_text() == readme  # --no_readme leaves it alone


def test_datasets_read_uint8_only_for_uint8_safe_pipelines(synthetic_root):
    from paddleseg.datasets import Cityscapes as StockCityscapes

    from paddle_stdc.data.datasets import Cityscapes

    ops = _train_ops(T) + [T.Normalize()]
    ours = Cityscapes(ops, str(synthetic_root))
    stock = StockCityscapes(transforms=ops, dataset_root=str(synthetic_root))  # float32 reader
    _seed(0)
    before = stock[0]
    _seed(0)
    after = ours[0]
    np.testing.assert_array_equal(after["label"], before["label"])  # same draws, same labels
    assert after["img"].shape == before["img"].shape
    assert np.abs(after["img"] - before["img"]).max() < 1e-5

    seen = []

    class Spy(pst.Compose):
        def __call__(self, data):
            seen.append(data["img"].dtype)
            return super().__call__(data)

    ours.transforms = Spy(ops)
    ours[0]
    ours.transforms = Spy([pst.RandomDistort(), T.Normalize()])  # PIL-based: needs float
    ours[0]
    assert seen == [np.uint8, np.float32]
    assert T.takes_uint8(pst.Compose(ops)) and not T.takes_uint8(ours.transforms)
