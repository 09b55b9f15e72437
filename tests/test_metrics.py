"""Confusion matrix and metrics against naive per-pixel loops and PaddleSeg's formulas."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

from paddle_stdc.engine.metrics import SegMetrics, confusion_matrix


def _naive(pred, label, k, ignore=255):
    """Independent reference: per-pixel loop, then per-class formulas written out."""
    cm = np.zeros((k, k), dtype=np.int64)
    for p, g in zip(pred.reshape(-1).tolist(), label.reshape(-1).tolist()):
        if g != ignore:
            cm[g, p] += 1
    iou, precision, recall, dice = [], [], [], []
    for c in range(k):
        inter, gt, pr = cm[c, c], cm[c, :].sum(), cm[:, c].sum()
        union = gt + pr - inter
        iou.append(inter / union if union else np.nan)
        precision.append(inter / pr if pr else np.nan)
        recall.append(inter / gt if gt else np.nan)
        dice.append(2 * inter / (gt + pr) if gt + pr else np.nan)
    total = cm.sum()
    acc = sum(cm[c, c] for c in range(k)) / total
    pe = sum(cm[c, :].sum() * cm[:, c].sum() for c in range(k)) / total**2
    present = [v for v in iou if not np.isnan(v)]
    return {
        "cm": cm,
        "iou": np.array(iou),
        "precision": np.array(precision),
        "recall": np.array(recall),
        "dice": np.array(dice),
        "miou": sum(present) / len(present),
        "acc": acc,
        "kappa": (acc - pe) / (1 - pe),
    }


@pytest.mark.parametrize("seed,k", [(0, 5), (1, 3), (2, 19)])
def test_against_naive_loop_with_ignore_and_absent_class(seed, k):
    rng = np.random.RandomState(seed)
    label = rng.randint(0, k - 1, (2, 17, 13))  # the last class never occurs in the label ...
    pred = rng.randint(0, k - 1, label.shape)  # ... nor in the prediction
    label[rng.rand(*label.shape) < 0.1] = 255
    ref = _naive(pred, label, k)
    cm = confusion_matrix(pred, label, k)
    assert cm.dtype == np.int64 and cm.shape == (k, k)
    np.testing.assert_array_equal(cm, ref["cm"])
    m = SegMetrics.from_confusion(cm)
    np.testing.assert_allclose(m.class_iou, ref["iou"], equal_nan=True)
    np.testing.assert_allclose(m.class_precision, ref["precision"], equal_nan=True)
    np.testing.assert_allclose(m.class_recall, ref["recall"], equal_nan=True)
    np.testing.assert_allclose(m.class_dice, ref["dice"], equal_nan=True)
    assert np.isnan(m.class_iou[k - 1])
    assert m.miou == pytest.approx(ref["miou"])
    assert m.acc == pytest.approx(ref["acc"])
    assert m.kappa == pytest.approx(ref["kappa"])
    np.testing.assert_array_equal(m.class_pixels, ref["cm"].sum(1))


def test_paddle_tensors_and_squeezable_shapes_are_accepted():
    rng = np.random.RandomState(4)
    label = rng.randint(0, 4, (1, 1, 6, 7))
    pred = rng.randint(0, 4, (1, 6, 7))
    expected = _naive(pred, label, 4)["cm"]
    got = confusion_matrix(paddle.to_tensor(pred), paddle.to_tensor(label.astype("int32")), 4)
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(confusion_matrix(pred[0], label.astype(np.uint8), 4), expected)


def test_against_paddleseg_formulas():
    """kappa / acc / precision / recall as PaddleSeg's metrics, and its absent-as-0 mIoU."""
    from paddleseg.utils import metrics as ps_metrics

    rng = np.random.RandomState(5)
    k = 6
    label = rng.randint(0, k - 1, (30, 40))
    label[:3] = 255
    pred = rng.randint(0, k - 1, label.shape)
    cm = confusion_matrix(pred, label, k)
    areas = [paddle.to_tensor(a) for a in (np.diag(cm).copy(), cm.sum(0), cm.sum(1))]
    m = SegMetrics.from_confusion(cm)
    assert m.kappa == pytest.approx(ps_metrics.kappa(*areas))
    acc, precision, recall = ps_metrics.class_measurement(*areas)
    assert m.acc == pytest.approx(acc)
    np.testing.assert_allclose(np.nan_to_num(m.class_precision), precision)
    np.testing.assert_allclose(np.nan_to_num(m.class_recall), recall)
    class_iou, miou = ps_metrics.mean_iou(*areas)
    np.testing.assert_allclose(np.nan_to_num(m.class_iou), class_iou)
    assert m.miou_paddleseg == pytest.approx(miou)
    assert m.miou == pytest.approx(miou * k / (k - 1))  # nan-mean skips the absent class


def test_perfect_and_known_values():
    label = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
    m = SegMetrics.from_confusion(confusion_matrix(label.copy(), label, 3))
    assert m.miou == 1.0 and m.acc == 1.0 and m.kappa == pytest.approx(1.0)
    assert m.mdice == pytest.approx(1.0)
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    cm = confusion_matrix(pred, label, 3)
    # (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,2) (2,0); the 255 pixel is skipped.
    np.testing.assert_array_equal(cm, [[1, 1, 0], [0, 2, 0], [1, 0, 2]])
    m = SegMetrics.from_confusion(cm)
    # class 0: tp 1, union 2+2-1 -> 1/3; class 1: tp 2, union 2+3-2 -> 2/3; class 2: 2/(3+2-2)
    np.testing.assert_allclose(m.class_iou, [1 / 3, 2 / 3, 2 / 3])
    assert m.acc == pytest.approx(5 / 7)
    pe = (2 * 2 + 2 * 3 + 3 * 2) / 49
    assert m.kappa == pytest.approx((5 / 7 - pe) / (1 - pe))


def test_single_class_everywhere_has_kappa_one_and_empty_is_nan():
    m = SegMetrics.from_confusion(np.array([[10, 0], [0, 0]]))
    assert m.miou == 1.0 and m.kappa == 1.0 and np.isnan(m.class_iou[1])
    empty = SegMetrics.from_confusion(confusion_matrix(np.zeros(4), np.full(4, 255), 2))
    assert np.isnan(empty.miou) and np.isnan(empty.acc) and np.isnan(empty.kappa)


def test_out_of_range_label_names_the_values():
    label = np.array([[0, 1, 7, 19, 255]])
    with pytest.raises(ValueError, match=r"\[7, 19\]"):
        confusion_matrix(np.zeros_like(label), label, 5)
    with pytest.raises(ValueError, match=r"\[-1\]"):
        confusion_matrix(np.zeros(3, int), np.array([0, -1, 1]), 5)


def test_ignore_index_none_counts_every_pixel():
    with pytest.raises(ValueError, match="255"):
        confusion_matrix(np.zeros(3, int), np.array([0, 1, 255]), 2, ignore_index=None)
    cm = confusion_matrix(np.array([0, 1, 1]), np.array([0, 1, 0]), 2, ignore_index=None)
    np.testing.assert_array_equal(cm, [[1, 1], [0, 1]])


def test_out_of_range_prediction_is_an_error():
    with pytest.raises(ValueError, match=r"prediction values \[3\]"):
        confusion_matrix(np.array([0, 3]), np.array([0, 1]), 3)
    # ...but a prediction at an ignored pixel is not counted, hence not checked.
    assert confusion_matrix(np.array([0, 9]), np.array([0, 255]), 3).sum() == 1


def test_shape_mismatch_names_both_shapes():
    with pytest.raises(ValueError, match=r"\(4, 5\).*\(5, 4\)"):
        confusion_matrix(np.zeros((4, 5), int), np.zeros((5, 4), int), 3)


def test_float_inputs_must_be_integral():
    np.testing.assert_array_equal(
        confusion_matrix(np.array([1.0, 0.0]), np.array([1, 0]), 2), [[1, 0], [0, 1]]
    )
    with pytest.raises(ValueError, match="integer"):
        confusion_matrix(np.array([0.5, 0.0]), np.array([1, 0]), 2)


def test_full_cityscapes_map_counts_every_valid_pixel():
    # Full 2048x1024 maps with uint8 labels (no timing assertion: speed belongs to benchmarks).
    rng = np.random.RandomState(0)
    label = rng.randint(0, 19, (1024, 2048)).astype(np.uint8)
    label[:100] = 255
    pred = rng.randint(0, 19, (1024, 2048))
    cm = confusion_matrix(pred, label, 19)
    assert cm.sum() == (1024 - 100) * 2048
    np.testing.assert_array_equal(
        cm.sum(axis=1), np.bincount(label[100:].reshape(-1), minlength=19)
    )


def test_table_and_summary():
    m = SegMetrics.from_confusion(np.array([[5, 1, 0], [0, 3, 0], [0, 0, 0]]))
    table = m.format_table(["road", "sidewalk", "car"])
    lines = table.splitlines()
    assert len(lines) == 1 + 3 + 1  # header, classes, mean
    assert lines[1].startswith("road") and lines[3].startswith("car")
    assert "-" in lines[3] and "nan" not in table  # the absent class shows '-'
    assert m.format_table().splitlines()[1].startswith("0")
    assert m.summary().startswith(f"mIoU: {m.miou:.4f} Acc: {m.acc:.4f}")
