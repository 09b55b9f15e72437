"""Losses against hand-computed values and straightforward numpy references on tiny inputs."""

from __future__ import annotations

import inspect
import json
import math
from pathlib import Path

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager

from paddle_stdc.losses import CrossEntropyLoss, DetailAggregateLoss, OhemCrossEntropyLoss

IGNORE = 255
LN2 = math.log(2.0)


# ----------------------------------------------------------------------------- helpers


def _softmax(logit: np.ndarray) -> np.ndarray:
    e = np.exp(logit - logit.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _true_class_prob(logit: np.ndarray, label: np.ndarray) -> np.ndarray:
    """(N, C, H, W), (N, H, W) -> softmax probability of the label class (N, H, W)."""
    safe = np.where(label == IGNORE, 0, label)
    return np.take_along_axis(_softmax(logit.astype(np.float64)), safe[:, None], 1)[:, 0]


def _data(seed=0, n=2, c=4, h=6, w=5, ignore_frac=0.2):
    rng = np.random.RandomState(seed)
    logit = (rng.randn(n, c, h, w) * 2).astype("float32")
    label = rng.randint(0, c, (n, h, w))
    label[rng.rand(n, h, w) < ignore_frac] = IGNORE
    return logit, label


def _t(x, grad=False):
    t = paddle.to_tensor(x)
    t.stop_gradient = not grad
    return t


def _value(loss: paddle.Tensor) -> float:
    assert loss.ndim == 0 and loss.dtype == paddle.float32
    value = float(loss)
    assert np.isfinite(value)
    return value


# ----------------------------------------------------------------------------- CE


def _ce_reference(logit, label, weight=None, avg_non_ignore=True, top_k=1.0):
    """sum(w[y] * nll) / sum(denominator weights), as documented in CrossEntropyLoss."""
    valid = label != IGNORE
    w_cls = np.ones(logit.shape[1]) if weight is None else np.asarray(weight, np.float64)
    w = np.where(valid, w_cls[np.where(valid, label, 0)], 0.0)
    loss = (-np.log(_true_class_prob(logit, label)) * w).reshape(-1)
    denom = (w if avg_non_ignore else np.where(valid, w, 1.0)).reshape(-1)
    if top_k < 1.0:
        idx = np.argsort(-loss, kind="stable")[: int(top_k * loss.size)]
        loss, denom = loss[idx], denom[idx]
    return loss.sum() / denom.sum()


def _tiny_ce_case():
    # Pixel (0, 0): logits (0, 0), label 0 -> p = 1/2.  Pixel (0, 1): logits (ln 3, 0),
    # label 1 -> p = 1/4.  Pixel (0, 2): ignored.
    logit = np.zeros((1, 2, 1, 3), "float32")
    logit[0, 0, 0, 1] = math.log(3.0)
    label = np.array([[[0, 1, IGNORE]]])
    return logit, label


def test_ce_hand_computed_mean_over_valid_pixels():
    logit, label = _tiny_ce_case()
    got = _value(CrossEntropyLoss()(_t(logit), _t(label)))
    assert got == pytest.approx((LN2 + 2 * LN2) / 2, rel=1e-6)


def test_ce_hand_computed_class_weights():
    logit, label = _tiny_ce_case()
    got = _value(CrossEntropyLoss(weight=[1.0, 3.0])(_t(logit), _t(label)))
    # (1 * ln2 + 3 * ln4) / (1 + 3), PaddleSeg's mean(w * l) / mean(w * mask).
    assert got == pytest.approx(7 * LN2 / 4, rel=1e-6)


def test_ce_hand_computed_avg_over_all_pixels():
    logit, label = _tiny_ce_case()
    got = _value(CrossEntropyLoss(avg_non_ignore=False)(_t(logit), _t(label)))
    assert got == pytest.approx(3 * LN2 / 3, rel=1e-6)


@pytest.mark.parametrize("avg_non_ignore", [True, False])
@pytest.mark.parametrize("weight", [None, (0.5, 1.0, 2.0, 3.0)], ids=["unweighted", "weighted"])
def test_ce_matches_numpy(weight, avg_non_ignore):
    logit, label = _data(1)
    expected = _ce_reference(logit, label, weight, avg_non_ignore)
    loss = CrossEntropyLoss(weight=weight, avg_non_ignore=avg_non_ignore)
    assert _value(loss(_t(logit), _t(label))) == pytest.approx(expected, rel=1e-5)


def test_ce_top_k_keeps_hardest_pixels():
    logit, label = _data(2, ignore_frac=0.0)
    nll = -np.log(_true_class_prob(logit, label)).reshape(-1)
    k = int(0.25 * nll.size)
    expected = np.sort(nll)[-k:].mean()
    got = _value(CrossEntropyLoss(top_k_percent_pixels=0.25)(_t(logit), _t(label)))
    assert got == pytest.approx(expected, rel=1e-5)


@pytest.mark.parametrize("weight", [None, (0.5, 1.0, 2.0, 3.0)], ids=["unweighted", "weighted"])
@pytest.mark.parametrize("top_k", [0.3, 0.9])  # 0.9: ignored pixels fall in the top k
def test_ce_top_k_with_ignore_and_weights(weight, top_k):
    logit, label = _data(3, ignore_frac=0.3)
    expected = _ce_reference(logit, label, weight, top_k=top_k)
    loss = CrossEntropyLoss(weight=weight, top_k_percent_pixels=top_k)
    assert _value(loss(_t(logit), _t(label))) == pytest.approx(expected, rel=1e-5)


def test_ce_nhwc_equals_nchw():
    logit, label = _data(4)
    ref = _value(CrossEntropyLoss()(_t(logit), _t(label)))
    nhwc = CrossEntropyLoss(data_format="NHWC")(_t(logit.transpose(0, 2, 3, 1)), _t(label))
    assert _value(nhwc) == pytest.approx(ref, rel=1e-6)


def test_ce_argument_errors():
    logit, label = _data(5)
    with pytest.raises(ValueError, match="3 class weights for 4 classes"):
        CrossEntropyLoss(weight=[1, 1, 1])(_t(logit), _t(label))
    with pytest.raises(ValueError, match="top_k_percent_pixels"):
        CrossEntropyLoss(top_k_percent_pixels=0.0)
    with pytest.raises(ValueError, match="data_format"):
        CrossEntropyLoss(data_format="CHWN")


# ----------------------------------------------------------------------------- OHEM


def _ohem_reference(logit, label, thresh, min_kept):
    valid = label != IGNORE
    p = _true_class_prob(logit, label)
    kept = valid.copy()
    if valid.sum() > min_kept:
        threshold = thresh
        if min_kept > 0:
            threshold = max(thresh, np.sort(p[valid])[min_kept - 1])
        kept = valid & (p < threshold)
    nll = -np.log(p)
    return (nll * kept).mean() / (kept.mean() + 1e-5), kept


@pytest.mark.parametrize(
    "thresh,min_kept,regime",
    [
        (0.7, 10, "thresh"),
        (0.001, 20, "kth"),
        (0.3, 0, "thresh"),  # min_kept 0: the threshold is thresh
        (0.7, 110, "all-valid"),  # num_valid == min_kept
        (0.7, 115, "all-valid"),  # num_valid < min_kept < pixel count
        (0.7, 1000, "all-valid"),  # min_kept > pixel count
    ],
)
def test_ohem_matches_numpy(thresh, min_kept, regime):
    logit, label = _data(3, n=2, c=5, h=8, w=8)  # 128 pixels, 110 valid
    valid = label != IGNORE
    p = np.sort(_true_class_prob(logit, label)[valid])
    assert valid.sum() == 110
    if regime == "thresh":
        assert min_kept == 0 or p[min_kept - 1] < thresh
    elif regime == "kth":
        assert p[min_kept - 1] > thresh
    expected, kept = _ohem_reference(logit, label, thresh, min_kept)
    assert 0 < kept.sum() and (regime == "all-valid") == (kept.sum() == valid.sum())
    loss = OhemCrossEntropyLoss(thresh=thresh, min_kept=min_kept)
    assert _value(loss(_t(logit), _t(label))) == pytest.approx(expected, rel=1e-4)


def test_ohem_easy_pixels_keep_those_below_the_kth_probability():
    # Every pixel is confidently right (p > thresh), so the threshold becomes the 5th
    # smallest p and exactly the 4 pixels strictly below it are kept.
    label = np.zeros((1, 4, 4), dtype="int64")
    logit = np.zeros((1, 2, 4, 4), dtype="float32")
    logit[0, 0] = np.linspace(3, 6, 16).reshape(4, 4)
    expected, kept = _ohem_reference(logit, label, 0.7, 5)
    assert kept.sum() == 4
    got = _value(OhemCrossEntropyLoss(min_kept=5)(_t(logit), _t(label)))
    assert got == pytest.approx(expected, rel=1e-4) and got > 0


def test_ohem_gradient_only_on_kept_pixels():
    logit, label = _data(6, n=1, c=3, h=6, w=6)
    _, kept = _ohem_reference(logit, label, 0.7, 8)
    x = _t(logit, grad=True)
    OhemCrossEntropyLoss(thresh=0.7, min_kept=8)(x, _t(label)).backward()
    grad_norm = np.abs(x.grad.numpy()).sum(1)
    assert np.all(grad_norm[~kept] == 0) and np.all(grad_norm[kept] > 0)


def test_ohem_rejects_negative_min_kept():
    with pytest.raises(ValueError, match="min_kept"):
        OhemCrossEntropyLoss(min_kept=-1)


# ----------------------------------------------------------------------------- shared contract

CE_LIKE = [
    CrossEntropyLoss,
    lambda: CrossEntropyLoss(weight=[1.0, 2.0, 3.0]),
    lambda: CrossEntropyLoss(top_k_percent_pixels=0.5),
    lambda: CrossEntropyLoss(avg_non_ignore=False),
    OhemCrossEntropyLoss,
    lambda: OhemCrossEntropyLoss(min_kept=0),
    lambda: OhemCrossEntropyLoss(min_kept=4),
]
CE_IDS = ["ce", "ce-weighted", "ce-topk", "ce-avg-all", "ohem", "ohem-0", "ohem-4"]


@pytest.mark.parametrize("make", CE_LIKE, ids=CE_IDS)
def test_all_ignored_is_zero_and_backprops(make):
    logit = _t(np.random.RandomState(0).randn(1, 3, 4, 4).astype("float32"), grad=True)
    label = _t(np.full((1, 4, 4), IGNORE, dtype="int64"))
    loss = make()(logit, label)
    loss.backward()
    assert _value(loss) == 0.0
    assert np.all(logit.grad.numpy() == 0)


@pytest.mark.parametrize(
    "make", [CrossEntropyLoss, OhemCrossEntropyLoss, lambda: OhemCrossEntropyLoss(min_kept=10)]
)
def test_label_layouts_and_dtypes_agree_and_grads_flow(make):
    logit, label = _data(4)
    ref = _value(make()(_t(logit), _t(label.astype("int64"))))
    assert _value(make()(_t(logit), _t(label.astype("int32")))) == pytest.approx(ref)
    assert _value(make()(_t(logit), _t(label[:, None].astype("int64")))) == pytest.approx(ref)
    assert _value(make()(_t(logit.astype("float64")), _t(label))) == pytest.approx(ref, rel=1e-5)
    x = _t(logit, grad=True)
    make()(x, _t(label)).backward()
    assert np.isfinite(x.grad.numpy()).all() and np.abs(x.grad.numpy()).sum() > 0


@pytest.mark.parametrize("cls", [CrossEntropyLoss, OhemCrossEntropyLoss])
def test_size_mismatch_is_a_clear_error(cls):
    logit, label = _t(np.zeros((1, 3, 4, 4), "float32")), _t(np.zeros((1, 8, 8), "int64"))
    with pytest.raises(ValueError, match=r"logit \[1, 3, 4, 4\] and label \[1, 8, 8\]"):
        cls()(logit, label)


# ----------------------------------------------------------------------------- detail loss


def _boundary_reference(label: np.ndarray, fuse=(0.6, 0.3, 0.1)) -> np.ndarray:
    """Laplacian edges at strides 1/2/4 (padding 1), nearest-upsampled, fused, thresholded."""
    n, h, w = label.shape
    padded = np.pad(label.astype(np.float64), ((0, 0), (1, 1), (1, 1)))
    lap = 9 * padded[:, 1:-1, 1:-1] - sum(
        padded[:, dy : dy + h, dx : dx + w] for dy in range(3) for dx in range(3)
    )
    fused = np.zeros((n, h, w))
    for stride, weight in zip((1, 2, 4), fuse):
        edge = np.clip(lap[:, ::stride, ::stride], 0, None)
        ho, wo = edge.shape[1:]
        rows = np.floor(np.arange(h) * ho / h).astype(int)
        cols = np.floor(np.arange(w) * wo / w).astype(int)
        fused += weight * (edge[:, rows][:, :, cols] > 0.1)
    return (fused > 0.1).astype(np.float32)


def _bce_dice_reference(logits: np.ndarray, target: np.ndarray) -> float:
    n = logits.shape[0]
    p = 1 / (1 + np.exp(-logits.astype(np.float64)))
    bce = -(target * np.log(p) + (1 - target) * np.log(1 - p)).mean()
    inter = (p * target).reshape(n, -1).sum(1)
    dice = 1 - (2 * inter + 1) / (p.reshape(n, -1).sum(1) + target.reshape(n, -1).sum(1) + 1)
    return bce + dice.mean()


def _bilinear_align_corners(x: np.ndarray, size) -> np.ndarray:
    """(N, C, h, w) -> (N, C, H, W), bilinear with align_corners=True."""
    h, w = x.shape[2:]
    ys = np.arange(size[0]) * (h - 1) / max(size[0] - 1, 1)
    xs = np.arange(size[1]) * (w - 1) / max(size[1] - 1, 1)
    y0, x0 = np.floor(ys).astype(int), np.floor(xs).astype(int)
    y1, x1 = np.minimum(y0 + 1, h - 1), np.minimum(x0 + 1, w - 1)
    wy, wx = (ys - y0)[:, None], (xs - x0)[None, :]
    top = x[:, :, y0][:, :, :, x0] * (1 - wx) + x[:, :, y0][:, :, :, x1] * wx
    bot = x[:, :, y1][:, :, :, x0] * (1 - wx) + x[:, :, y1][:, :, :, x1] * wx
    return top * (1 - wy) + bot * wy


def _square_label() -> np.ndarray:
    label = np.zeros((1, 8, 8), dtype="int64")
    label[0, 2:6, 2:6] = 1
    return label


# Derived by hand for the 8x8 label with a square of 1s at rows/cols 2..5:
# * stride 1: the Laplacian is > 0 exactly on the square's 12 border pixels;
# * stride 2 (4x4 output centred on even pixels): > 0 at centres (2,2), (2,4), (4,2),
#   0 at (4,4) (all neighbours are 1); nearest-upsampled, every cell covers a 2x2 block;
# * stride 4 (2x2 output centred on pixels 0 and 4): nothing > 0.
# Fused 0.6*s1 + 0.3*s2 + 0.1*s4 > 0.1 is s1 OR s2: the square minus its pixel (4, 4).
SQUARE_TARGET = """
........
........
..####..
..####..
..##.#..
..####..
........
........
"""
# With fuse weights (1, 0, 0) only the stride-1 ring remains.
SQUARE_RING = """
........
........
..####..
..#..#..
..#..#..
..####..
........
........
"""


def _ascii_map(art: str) -> np.ndarray:
    return np.array([[c == "#" for c in row] for row in art.split()], dtype=np.float32)


def test_detail_boundary_targets_of_a_square_by_hand():
    target = DetailAggregateLoss().boundary_targets(_t(_square_label())).numpy()
    assert target.shape == (1, 1, 8, 8)
    np.testing.assert_array_equal(target[0, 0], _ascii_map(SQUARE_TARGET))
    np.testing.assert_array_equal(target[0, 0], _boundary_reference(_square_label())[0])


def test_detail_boundary_targets_follow_the_fuse_kernel():
    loss = DetailAggregateLoss(fuse_init=(1.0, 0.0, 0.0))
    target = loss.boundary_targets(_t(_square_label())).numpy()[0, 0]
    np.testing.assert_array_equal(target, _ascii_map(SQUARE_RING))


@pytest.mark.parametrize("shape", [(2, 19, 23), (1, 16, 16), (1, 7, 9)])
def test_detail_boundary_targets_match_reference_on_random_labels(shape):
    label = np.random.RandomState(5).randint(0, 4, shape)
    label[:, :3] = IGNORE  # used as-is, like the official code
    got = DetailAggregateLoss().boundary_targets(_t(label)).numpy()[:, 0]
    np.testing.assert_array_equal(got, _boundary_reference(label))


def test_detail_loss_value_matches_numpy_bce_plus_dice():
    rng = np.random.RandomState(0)
    label = rng.randint(0, 3, (2, 16, 16))
    logits = rng.randn(2, 1, 16, 16).astype("float32")
    expected = _bce_dice_reference(logits, _boundary_reference(label)[:, None])
    got = _value(DetailAggregateLoss()(_t(logits), _t(label)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_detail_loss_upsamples_low_resolution_logits_bilinearly():
    rng = np.random.RandomState(1)
    label = rng.randint(0, 3, (2, 12, 16))
    logits = rng.randn(2, 1, 4, 5).astype("float32")
    up = _bilinear_align_corners(logits.astype(np.float64), (12, 16))
    expected = _bce_dice_reference(up, _boundary_reference(label)[:, None])
    x = _t(logits, grad=True)
    value = DetailAggregateLoss()(x, _t(label))
    value.backward()
    assert _value(value) == pytest.approx(expected, rel=1e-5)
    assert np.isfinite(x.grad.numpy()).all() and np.abs(x.grad.numpy()).sum() > 0


def test_detail_loss_label_layouts_and_all_ignored():
    label = _square_label()
    logits = np.random.RandomState(2).randn(1, 1, 8, 8).astype("float32")
    ref = _value(DetailAggregateLoss()(_t(logits), _t(label)))
    assert _value(DetailAggregateLoss()(_t(logits), _t(label.astype("int32")))) == ref
    assert _value(DetailAggregateLoss()(_t(logits), _t(label[:, None]))) == ref
    # All ignored: the label is used as-is, so the image border is the target (finite loss).
    x = _t(logits, grad=True)
    value = DetailAggregateLoss()(x, _t(np.full((1, 8, 8), IGNORE, "int64")))
    value.backward()
    assert np.isfinite(_value(value)) and np.isfinite(x.grad.numpy()).all()


def test_detail_loss_rejects_multichannel_logits():
    with pytest.raises(ValueError, match=r"logits \[1, 2, 8, 8\] and label \[1, 8, 8\]"):
        DetailAggregateLoss()(_t(np.zeros((1, 2, 8, 8), "float32")), _t(_square_label()))


def test_detail_fuse_kernel_is_a_fixed_unsaved_buffer():
    loss = DetailAggregateLoss()
    assert loss.parameters() == [] and loss.state_dict() == {}
    assert loss.fuse_kernel.stop_gradient and loss.fuse_kernel.shape == [1, 3, 1, 1]
    np.testing.assert_allclose(loss.fuse_kernel.numpy().reshape(-1), [0.6, 0.3, 0.1], rtol=1e-7)
    logits = _t(np.random.RandomState(3).randn(1, 1, 8, 8).astype("float32"), grad=True)
    loss(logits, _t(_square_label())).backward()
    np.testing.assert_allclose(loss.fuse_kernel.numpy().reshape(-1), [0.6, 0.3, 0.1], rtol=1e-7)
    loss.set_iteration(50_000)  # no kernel_decay: the hook changes nothing
    np.testing.assert_allclose(loss.fuse_kernel.numpy().reshape(-1), [0.6, 0.3, 0.1], rtol=1e-7)


def test_detail_kernel_decay_needs_the_schedule():
    loss = DetailAggregateLoss(kernel_decay=True)
    logits = _t(np.zeros((1, 1, 8, 8), "float32"))
    with pytest.raises(RuntimeError, match="bind_schedule"):
        loss(logits, _t(_square_label()))


def test_detail_kernel_decay_is_a_function_of_the_step():
    lrs = [0.07] * 40
    loss = DetailAggregateLoss(kernel_decay=True)
    loss.bind_schedule(lrs, weight_decay=0.05, momentum=0.9)
    # numpy float64 recurrence of SGD with zero gradient: d = wd p, buf = m buf + d, p -= lr buf
    p, buf, expected = np.array([0.6, 0.3, 0.1]), np.zeros(3), {0: [0.6, 0.3, 0.1]}
    for k, lr in enumerate(lrs):
        buf = 0.9 * buf + 0.05 * p
        p = p - lr * buf
        expected[k + 1] = p.copy()
    for step in (0, 1, 7, 40):
        loss.set_iteration(step)
        np.testing.assert_allclose(loss.fuse_kernel.numpy().reshape(-1), expected[step], rtol=1e-5)
    loss.set_iteration(1000)  # beyond the schedule: the last kernel
    np.testing.assert_allclose(loss.fuse_kernel.numpy().reshape(-1), expected[40], rtol=1e-5)
    # A fresh loss told the same step has the same kernel (what makes resuming exact).
    other = DetailAggregateLoss(kernel_decay=True)
    other.bind_schedule(lrs, weight_decay=0.05, momentum=0.9)
    other.set_iteration(7)
    loss.set_iteration(7)
    np.testing.assert_array_equal(other.fuse_kernel.numpy(), loss.fuse_kernel.numpy())
    # The decayed kernel (a = 0.21x) changes the targets: 0.3a < 0.1 < 0.6a keeps stride 1 only.
    loss.set_iteration(40)
    assert 0.3 * expected[40][0] / 0.6 < 0.1 < expected[40][0]
    target = loss.boundary_targets(_t(_square_label())).numpy()[0, 0]
    np.testing.assert_array_equal(target, _ascii_map(SQUARE_RING))


# ----------------------------------------------------------------------------- registry

PADDLESEG_CLASSES = {
    "CrossEntropyLoss": "paddleseg.models.losses.cross_entropy_loss",
    "OhemCrossEntropyLoss": "paddleseg.models.losses.ohem_cross_entropy_loss",
    "DetailAggregateLoss": "paddleseg.models.losses.detail_aggregate_loss",
}
# Keyword arguments as PaddleSeg configs write them.
CONFIG_KWARGS = {
    "CrossEntropyLoss": dict(
        weight=[1.0] * 19,
        ignore_index=255,
        top_k_percent_pixels=0.7,
        avg_non_ignore=True,
        data_format="NCHW",
    ),
    "OhemCrossEntropyLoss": dict(thresh=0.7, min_kept=130000, ignore_index=255),
    "DetailAggregateLoss": dict(ignore_index=255),
}


@pytest.mark.parametrize("name", sorted(PADDLESEG_CLASSES))
def test_paddleseg_registry_builds_ours_with_config_kwargs(name):
    import importlib

    import paddle_stdc.losses  # noqa: F401  (registration)

    cls = manager.LOSSES[name]
    assert cls.__module__.startswith("paddle_stdc")
    assert isinstance(cls(**CONFIG_KWARGS[name]), paddle.nn.Layer)
    theirs = getattr(importlib.import_module(PADDLESEG_CLASSES[name]), name)
    their_params = list(inspect.signature(theirs.__init__).parameters)[1:]
    our_params = list(inspect.signature(cls.__init__).parameters)[1:]
    assert our_params[: len(their_params)] == their_params  # same names, same order


# ----------------------------------------------------------------------------- MixedLoss


def test_mixed_loss_is_the_weighted_sum_of_its_parts():
    from paddle_stdc.losses import MixedLoss

    paddle.seed(2)
    logit = paddle.randn([2, 4, 6, 6])
    label = paddle.randint(0, 4, [2, 6, 6])
    label[0, 0, :] = IGNORE
    parts = [
        CrossEntropyLoss(),
        OhemCrossEntropyLoss(min_kept=5),
        CrossEntropyLoss(weight=[1, 2, 3, 4]),
    ]
    mixed = MixedLoss(parts, [0.5, 2, 0.25])
    want = 0.5 * float(parts[0](logit, label)) + 2 * float(parts[1](logit, label))
    want += 0.25 * float(parts[2](logit, label))
    assert mixed(logit, label).shape == [] and float(mixed(logit, label)) == pytest.approx(want)
    pieces = [float(v) for v in mixed.weighted_parts(logit, label)]
    assert sum(pieces) == pytest.approx(want)
    logit.stop_gradient = False
    mixed(logit, label).backward()
    assert float(logit.grad.abs().sum()) > 0


def test_mixed_loss_is_ours_in_the_registry_and_keeps_paddlesegs_arguments():
    from paddleseg.models.losses.mixed_loss import MixedLoss as Theirs

    from paddle_stdc.losses import MixedLoss

    cls = manager.LOSSES["MixedLoss"]
    assert cls is MixedLoss
    assert list(inspect.signature(cls.__init__).parameters) == list(
        inspect.signature(Theirs.__init__).parameters
    )


def test_mixed_loss_with_a_detail_loss_has_no_parameters_and_reaches_its_hook():
    from paddle_stdc.engine.trainer import iteration_hooks
    from paddle_stdc.losses import MixedLoss

    parts = [DetailAggregateLoss(), DetailAggregateLoss(fuse_init=(1.0, 0.0, 0.0))]
    mixed = MixedLoss(parts, [1.0, 0.5])
    assert mixed.parameters() == [] and mixed.state_dict() == {}
    assert iteration_hooks({"types": [mixed], "coef": [1]}) == parts
    logit = _t(np.random.RandomState(0).randn(1, 1, 8, 8).astype("float32"), grad=True)
    value = mixed(logit, _t(_square_label()))
    value.backward()
    assert np.isfinite(_value(value)) and np.abs(logit.grad.numpy()).sum() > 0


@pytest.mark.parametrize(
    "losses, coef, message",
    [
        ([], [], "non-empty list"),
        ("CrossEntropyLoss", [1.0], "non-empty list"),
        (["x"], [1.0], r"losses\[0\] must be a loss component"),
        (None, None, "non-empty list"),
        ([CrossEntropyLoss()], [1.0, 2.0], "1 entries but `coef` 2"),
        ([CrossEntropyLoss()], 1.0, "`coef` must be a list"),
        ([CrossEntropyLoss()], ["a"], r"coef\[0\] must be a number"),
    ],
)
def test_mixed_loss_argument_errors(losses, coef, message):
    from paddle_stdc.losses import MixedLoss

    with pytest.raises((TypeError, ValueError), match=message):
        MixedLoss(losses, coef)


# ----------------------------------------------------------------------------- official code
# Numbers of the official STDC-Seg OhemCELoss / DetailAggregateLoss (tests/fixtures/official,
# README there); the inputs are regenerated by the same rules.

OFFICIAL = Path(__file__).parent / "fixtures" / "official"


def official_numbers() -> dict:
    return json.loads((OFFICIAL / "official_losses.json").read_text())


def official_grads() -> dict:
    with np.load(OFFICIAL / "official_grads.npz") as data:
        return {k: data[k] for k in data.files}


def ohem_inputs(seed, n, c, h, w, scale, ignore_frac, confident):
    rng = np.random.RandomState(seed)
    logit = (rng.randn(n, c, h, w) * scale).astype(np.float32)
    label = rng.randint(0, c, (n, h, w))
    if confident:
        np.put_along_axis(logit, label[:, None], 6.0, axis=1)
    label[rng.rand(n, h, w) < ignore_frac] = IGNORE
    return logit, label


def detail_inputs(seed, n, h, w, stride):
    rng = np.random.RandomState(seed)
    label = np.zeros((n, h, w), np.int64)
    for i in range(n):
        for _ in range(6):
            y, x = rng.randint(0, h - 2), rng.randint(0, w - 2)
            hh, ww = rng.randint(2, h // 2), rng.randint(2, w // 2)
            label[i, y : y + hh, x : x + ww] = rng.randint(1, 19)
    label[:, : h // 8] = IGNORE
    logits = rng.randn(n, 1, h // stride, w // stride).astype(np.float32)
    return logits, label


def _ohem_case(name):
    case = dict(official_numbers()["ohem"][name])
    args = {k: v for k, v in case["input"].items() if k != "n_min"}
    return case, ohem_inputs(**args)


@pytest.mark.parametrize("name", ["hard", "easy", "mostly_ignored", "stdc_rule"])
def test_ohem_keep_exactly_equals_the_official_ohem(name):
    case, (logit, label) = _ohem_case(name)
    x = _t(logit, grad=True)
    loss = OhemCrossEntropyLoss(0.7, case["input"]["n_min"], keep_exactly=True)(x, _t(label))
    loss.backward()
    assert _value(loss) == pytest.approx(case["loss"], rel=2e-6)
    want = official_grads()[f"ohem_{name}_grad"]
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-4, atol=1e-9)
    assert np.count_nonzero(want) > 0


@pytest.mark.parametrize("name", ["hard", "easy", "stdc_rule"])
def test_paddleseg_ohem_with_n_min_plus_one_is_the_official_within_its_epsilon(name):
    case, (logit, label) = _ohem_case(name)
    n_min = case["input"]["n_min"]
    loss = OhemCrossEntropyLoss(0.7, n_min + 1)
    got = _value(loss(_t(logit), _t(label)))
    nll = -np.log(_true_class_prob(logit, label))
    prob = _t(np.exp(-nll).reshape(-1).astype("float32"))
    kept = loss.kept_mask(prob, _t((label != IGNORE).reshape(-1)))
    kept = float(kept.sum())
    # ours divides by kept + 1e-5 x pixels, the official by kept
    assert got == pytest.approx(case["loss"] * kept / (kept + 1e-5 * label.size), rel=2e-6)


def test_paddleseg_ohem_differs_from_the_official_with_few_valid_pixels():
    case, (logit, label) = _ohem_case("mostly_ignored")
    assert (label != IGNORE).sum() < case["input"]["n_min"]  # official averages in zeros
    got = _value(OhemCrossEntropyLoss(0.7, case["input"]["n_min"] + 1)(_t(logit), _t(label)))
    assert got > 1.5 * case["loss"]


def test_ohem_keep_exactly_needs_fewer_kept_than_pixels():
    with pytest.raises(ValueError, match="min_kept"):
        OhemCrossEntropyLoss(min_kept=0, keep_exactly=True)
    with pytest.raises(ValueError, match="smaller than the batch's 16 pixels"):
        OhemCrossEntropyLoss(min_kept=16, keep_exactly=True)(
            _t(np.zeros((1, 2, 4, 4), "float32")), _t(np.zeros((1, 4, 4), "int64"))
        )


@pytest.mark.parametrize("name", ["upsampled", "full_size"])
def test_detail_loss_equals_the_official(name):
    case = official_numbers()["detail"][name]
    logits, label = detail_inputs(**case["input"])
    x = _t(logits, grad=True)
    loss = DetailAggregateLoss()(x, _t(label))
    loss.backward()
    assert _value(loss) == pytest.approx(case["bce"] + case["dice"], rel=2e-6)
    want = official_grads()[f"detail_{name}_grad"]
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-4, atol=1e-9)
