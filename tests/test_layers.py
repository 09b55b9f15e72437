"""Blocks whose exported form differs from their training form, and prepare_for_export."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn as nn
import paddle.nn.functional as F
import pytest

import paddle_stdc
from paddle_stdc.export import FusedAvgPool3x3S2, prepare_for_export
from paddle_stdc.models.backbones.stdcnet import AvgPool3x3S2
from paddle_stdc.models.layers import NonNeg


@pytest.mark.parametrize("size", [(8, 12), (9, 13), (1, 1), (2, 3)])
@pytest.mark.parametrize("count_pad", [False, True], ids=["exclusive", "count_pad"])
@pytest.mark.parametrize("form", ["train", "export", "export-static"])
def test_avg_pool_equals_avg_pool2d(size, count_pad, form):
    """The box-filter pool equals ``AvgPool2D(3, 2, 1)`` on ReLU outputs, borders included:
    padded cells excluded from the mean (PaddleSeg) or counted (PyTorch's default), in the
    training form and in the export form, also as a static graph."""
    x = F.relu(paddle.to_tensor(np.random.RandomState(0).randn(2, 5, *size).astype("float32")))
    pool = AvgPool3x3S2(count_pad) if form == "train" else FusedAvgPool3x3S2(count_pad)
    if form == "export-static":
        pool = paddle.jit.to_static(pool, full_graph=True)
    expected = F.avg_pool2d(x, 3, 2, 1, exclusive=not count_pad)
    np.testing.assert_allclose(pool(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("name", ["stdc1_seg", "bisenetv1_r18"])
def test_prepare_for_export_swaps_the_marked_blocks_and_keeps_the_outputs(name):
    paddle.seed(0)
    model = paddle_stdc.create_model(name, num_classes=5)
    model.eval()
    marks = [m for m in model.sublayers() if isinstance(m, (NonNeg, AvgPool3x3S2))]
    assert marks, "the model has no export-time marks"
    x = paddle.to_tensor(np.random.RandomState(1).randn(1, 3, 64, 96).astype("float32"))
    with paddle.no_grad():
        before = model(x)[0].numpy()
        prepared = prepare_for_export(model)
        after = prepared(x)[0].numpy()
    assert prepared is model
    assert not any(type(m) in (NonNeg, AvgPool3x3S2) for m in model.sublayers())
    assert any(isinstance(m, nn.ReLU) for m in model.sublayers())
    np.testing.assert_allclose(after, before, rtol=1e-5, atol=1e-5 * np.abs(before).max())
