"""Losses against straightforward numpy references on tiny inputs."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import manager

from paddle_stdc.losses import CrossEntropyLoss, DetailAggregateLoss, OhemCrossEntropyLoss

IGNORE = 255


def _softmax(logit: np.ndarray) -> np.ndarray:
    e = np.exp(logit - logit.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _true_class_prob(logit, label):
    prob = _softmax(logit)
    safe = np.where(label == IGNORE, 0, label)
    return np.take_along_axis(prob, safe[:, None], 1)[:, 0]


def _data(seed=0, n=2, c=4, h=6, w=5, ignore_frac=0.2):
    rng = np.random.RandomState(seed)
    logit = rng.randn(n, c, h, w).astype("float32") * 2
    label = rng.randint(0, c, (n, h, w))
    label[rng.rand(n, h, w) < ignore_frac] = IGNORE
    return logit, label


def _t(x, grad=False):
    t = paddle.to_tensor(x)
    t.stop_gradient = not grad
    return t


def test_ce_matches_numpy_mean_over_valid_pixels():
    logit, label = _data()
    valid = label != IGNORE
    expected = -np.log(_true_class_prob(logit, label))[valid].mean()
    got = float(CrossEntropyLoss()(_t(logit), _t(label)))
    assert got == pytest.approx(expected, rel=1e-5)


def test_ce_class_weights_weighted_mean():
    logit, label = _data(1)
    weight = np.array([0.5, 1.0, 2.0, 3.0], dtype="float32")
    valid = label != IGNORE
    w = weight[np.where(valid, label, 0)] * valid
    nll = -np.log(_true_class_prob(logit, label))
    expected = (nll * w).sum() / w.sum()
    got = float(CrossEntropyLoss(weight=list(weight))(_t(logit), _t(label)))
    assert got == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match="3 class weights for 4 classes"):
        CrossEntropyLoss(weight=[1, 1, 1])(_t(logit), _t(label))


def test_ce_top_k_keeps_hardest_pixels():
    logit, label = _data(2, ignore_frac=0.0)
    nll = -np.log(_true_class_prob(logit, label)).reshape(-1)
    k = int(0.25 * nll.size)
    expected = np.sort(nll)[-k:].mean()
    got = float(CrossEntropyLoss(top_k_percent_pixels=0.25)(_t(logit), _t(label)))
    assert got == pytest.approx(expected, rel=1e-5)


def _ohem_reference(logit, label, thresh, min_kept):
    valid = label != IGNORE
    p = _true_class_prob(logit, label)
    nll = -np.log(p)
    kept = valid.copy()
    if 0 < min_kept < valid.sum():
        kth = np.sort(p[valid])[min_kept - 1]
        threshold = max(thresh, kth)
        kept = valid & (p < threshold)
    return (nll * kept).mean() / (kept.mean() + 1e-5)


@pytest.mark.parametrize(
    "thresh,min_kept",
    [(0.7, 10), (0.99, 5), (0.05, 20), (0.7, 1000)],
    ids=["kth-or-thresh", "thresh-dominates", "kth-dominates", "fewer-than-min-kept"],
)
def test_ohem_matches_numpy(thresh, min_kept):
    logit, label = _data(3, n=2, c=5, h=8, w=8)
    expected = _ohem_reference(logit, label, thresh, min_kept)
    loss = OhemCrossEntropyLoss(thresh=thresh, min_kept=min_kept)
    got = float(loss(_t(logit), _t(label)))
    assert got == pytest.approx(expected, rel=1e-4)


def test_ohem_keeps_at_least_min_kept_when_easy():
    # Every pixel is confidently right: p > thresh, so the threshold becomes the kth p.
    label = np.zeros((1, 4, 4), dtype="int64")
    logit = np.zeros((1, 2, 4, 4), dtype="float32")
    logit[:, 0] = np.linspace(3, 6, 16).reshape(4, 4)
    expected = _ohem_reference(logit, label, 0.7, 5)
    got = float(OhemCrossEntropyLoss(min_kept=5)(_t(logit), _t(label)))
    assert got == pytest.approx(expected, rel=1e-4) and got > 0


@pytest.mark.parametrize("loss_cls", [CrossEntropyLoss, OhemCrossEntropyLoss])
def test_all_ignored_is_zero_and_backprops(loss_cls):
    logit = _t(np.random.RandomState(0).randn(1, 3, 4, 4).astype("float32"), grad=True)
    label = _t(np.full((1, 4, 4), IGNORE, dtype="int64"))
    loss = loss_cls()(logit, label)
    loss.backward()
    assert float(loss) == 0.0
    assert np.all(logit.grad.numpy() == 0)


@pytest.mark.parametrize("loss_cls", [CrossEntropyLoss, OhemCrossEntropyLoss])
def test_label_layouts_and_dtypes_agree_and_grads_flow(loss_cls):
    logit, label = _data(4)
    ref = float(loss_cls()(_t(logit), _t(label.astype("int64"))))
    assert float(loss_cls()(_t(logit), _t(label.astype("int32")))) == pytest.approx(ref)
    assert float(loss_cls()(_t(logit), _t(label[:, None].astype("int64")))) == pytest.approx(ref)
    x = _t(logit, grad=True)
    loss_cls()(x, _t(label)).backward()
    assert np.abs(x.grad.numpy()).sum() > 0


def test_size_mismatch_is_a_clear_error():
    with pytest.raises(ValueError, match=r"logit \[1, 3, 4, 4\] and label \[1, 8, 8\]"):
        CrossEntropyLoss()(_t(np.zeros((1, 3, 4, 4), "float32")), _t(np.zeros((1, 8, 8), "int64")))


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


def test_detail_boundary_targets_of_a_square():
    label = np.zeros((1, 8, 8), dtype="int64")
    label[0, 2:6, 2:6] = 1
    target = DetailAggregateLoss().boundary_targets(_t(label)).numpy()[0, 0]
    ring = np.zeros((8, 8), bool)
    ring[2:6, 2:6] = True
    ring[3:5, 3:5] = False
    assert np.all(target[ring] == 1)  # the square's own border
    assert target[:2].sum() == 0 and target[6:].sum() == 0  # far from the square
    np.testing.assert_array_equal(target, _boundary_reference(label)[0])


def test_detail_boundary_targets_match_reference_on_random_labels():
    label = np.random.RandomState(5).randint(0, 4, (2, 19, 23))
    label[:, :3] = IGNORE  # used as-is, like the official code
    got = DetailAggregateLoss().boundary_targets(_t(label)).numpy()[:, 0]
    np.testing.assert_array_equal(got, _boundary_reference(label))


def test_detail_loss_value_matches_numpy_bce_plus_dice():
    rng = np.random.RandomState(0)
    label = rng.randint(0, 3, (2, 16, 16))
    logits = rng.randn(2, 1, 16, 16).astype("float32")
    loss = DetailAggregateLoss()
    target = loss.boundary_targets(_t(label)).numpy()
    p = 1 / (1 + np.exp(-logits))
    bce = -(target * np.log(p) + (1 - target) * np.log(1 - p)).mean()
    inter = (p * target).reshape(2, -1).sum(1)
    dice = 1 - (2 * inter + 1) / (p.reshape(2, -1).sum(1) + target.reshape(2, -1).sum(1) + 1)
    assert float(loss(_t(logits), _t(label))) == pytest.approx(bce + dice.mean(), rel=1e-5)


def test_detail_fuse_kernel_is_a_trainable_saved_parameter():
    loss = DetailAggregateLoss()
    params = loss.parameters()
    assert len(params) == 1 and not params[0].stop_gradient
    np.testing.assert_allclose(params[0].numpy().reshape(-1), [0.6, 0.3, 0.1], rtol=1e-6)
    assert list(loss.state_dict()) == ["fuse_kernel"]
    assert params[0].regularizer is not None  # exempt from weight decay


def test_detail_loss_upsamples_low_resolution_logits_and_is_finite():
    label = _t(np.zeros((2, 32, 32), dtype="int64"))  # no boundaries at all
    logits = _t(np.random.RandomState(1).randn(2, 1, 4, 4).astype("float32"), grad=True)
    value = DetailAggregateLoss()(logits, label)
    value.backward()
    assert np.isfinite(float(value)) and np.isfinite(logits.grad.numpy()).all()


@pytest.mark.parametrize(
    "name", ["CrossEntropyLoss", "OhemCrossEntropyLoss", "DetailAggregateLoss"]
)
def test_paddleseg_registry_builds_ours(name):
    cls = manager.LOSSES[name]
    assert cls.__module__.startswith("paddle_stdc.losses")
    kwargs = {"ignore_index": 255}
    if name == "OhemCrossEntropyLoss":
        kwargs.update(min_kept=130000, thresh=0.7)
    assert isinstance(cls(**kwargs), paddle.nn.Layer)
