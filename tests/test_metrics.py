"""Metrics against a naive per-pixel numpy loop."""

from __future__ import annotations

import numpy as np
import pytest

from paddle_stdc.engine.metrics import SegMetrics, confusion_matrix


def _naive(pred, label, k, ignore=255):
    cm = np.zeros((k, k), dtype=np.int64)
    for p, g in zip(pred.reshape(-1), label.reshape(-1)):
        if g != ignore:
            cm[g, p] += 1
    iou = []
    for c in range(k):
        inter = cm[c, c]
        union = cm[c].sum() + cm[:, c].sum() - inter
        iou.append(inter / union if union else np.nan)
    total = cm.sum()
    acc = np.trace(cm) / total
    pe = sum(cm[c].sum() * cm[:, c].sum() for c in range(k)) / total**2
    return cm, np.array(iou), acc, (acc - pe) / (1 - pe)


def test_against_naive_loop_with_ignore_and_absent_class():
    rng = np.random.RandomState(0)
    k = 5
    label = rng.randint(0, k - 1, (2, 17, 13))  # class 4 never in the label ...
    pred = rng.randint(0, k - 1, label.shape)  # ... nor in the prediction
    label[rng.rand(*label.shape) < 0.1] = 255
    cm_ref, iou_ref, acc_ref, kappa_ref = _naive(pred, label, k)
    cm = confusion_matrix(pred, label, k)
    np.testing.assert_array_equal(cm, cm_ref)
    m = SegMetrics.from_confusion(cm)
    np.testing.assert_allclose(m.class_iou, iou_ref, equal_nan=True)
    assert np.isnan(m.class_iou[4])
    assert m.miou == pytest.approx(np.nanmean(iou_ref))
    assert m.acc == pytest.approx(acc_ref)
    assert m.kappa == pytest.approx(kappa_ref)


def test_perfect_and_known_values():
    label = np.array([[0, 0, 1, 1], [2, 2, 2, 255]])
    m = SegMetrics.from_confusion(confusion_matrix(label.copy(), label, 3))
    assert m.miou == 1.0 and m.acc == 1.0 and m.kappa == pytest.approx(1.0)
    pred = np.array([[0, 1, 1, 1], [2, 2, 0, 0]])
    m = SegMetrics.from_confusion(confusion_matrix(pred, label, 3))
    # (gt, pred) pairs: (0,0) (0,1) (1,1) (1,1) (2,2) (2,2) (2,0); the 255 pixel is skipped.
    # class 0: tp 1, union 2+2-1 -> 1/3; class 1: tp 2, union 2+3-2 -> 2/3; class 2: 2/(3+2-2)
    np.testing.assert_allclose(m.class_iou, [1 / 3, 2 / 3, 2 / 3])
    assert m.acc == pytest.approx(5 / 7)


def test_out_of_range_label_names_the_values():
    label = np.array([[0, 1, 7, 19]])
    with pytest.raises(ValueError, match=r"\[7, 19\]"):
        confusion_matrix(np.zeros_like(label), label, 5)


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="differ in size"):
        confusion_matrix(np.zeros((4, 4)), np.zeros((4, 5)), 3)


def test_table_lists_every_class():
    m = SegMetrics.from_confusion(np.eye(3, dtype=np.int64))
    table = m.format_table(["road", "sky", "car"])
    assert all(name in table for name in ("road", "sky", "car"))
