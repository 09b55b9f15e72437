"""Shared blocks whose exported form differs from their dygraph form."""

from __future__ import annotations

import numpy as np
import paddle
import paddle.nn.functional as F
import pytest

from paddle_stdc.models.backbones.stdcnet import avg_pool_3x3_s2
from paddle_stdc.models.layers import nonneg


def test_nonneg_is_identity_in_dygraph_and_relu_in_static_graphs():
    x = paddle.to_tensor([[-2.0, 0.0, 3.0]])
    np.testing.assert_array_equal(nonneg(x).numpy(), x.numpy())
    static = paddle.jit.to_static(nonneg, full_graph=True)
    np.testing.assert_array_equal(static(x).numpy(), [[0.0, 0.0, 3.0]])


@pytest.mark.parametrize("size", [(8, 12), (9, 13), (1, 1), (2, 3)])
@pytest.mark.parametrize("static", [False, True], ids=["dygraph", "static"])
def test_avg_pool_equals_exclusive_avg_pool2d(size, static):
    """The box-filter form equals PaddleSeg's ``AvgPool2D(3, 2, 1)`` on ReLU outputs, borders
    included (padded cells are excluded from the mean), in dygraph and exported graphs."""
    x = F.relu(paddle.to_tensor(np.random.RandomState(0).randn(2, 5, *size).astype("float32")))
    pool = paddle.jit.to_static(avg_pool_3x3_s2, full_graph=True) if static else avg_pool_3x3_s2
    expected = F.avg_pool2d(x, 3, 2, 1, exclusive=True)
    np.testing.assert_allclose(pool(x).numpy(), expected.numpy(), rtol=1e-6, atol=1e-6)
