"""Our STDCSeg against PaddleSeg 2.8's: same parameter names/shapes, same eval logits."""

from __future__ import annotations

import numpy as np
import paddle
import pytest
from paddleseg.models import STDCSeg as PaddleSegSTDCSeg
from paddleseg.models.backbones import stdcnet as paddleseg_stdcnet
from paddleseg.models.bisenet import BiSeNetV2 as PaddleSegBiSeNetV2

import paddle_stdc
from paddle_stdc.weights import load_state


def _random_state(reference) -> dict:
    state = {}
    for i, (key, value) in enumerate(reference.state_dict().items()):
        rng = np.random.RandomState(i)
        if key.endswith("_variance"):
            arr = rng.uniform(0.5, 1.5, value.shape)
        else:
            arr = rng.randn(*value.shape) * 0.1
        state[key] = paddle.to_tensor(arr.astype("float32"))
    return state


@pytest.mark.parametrize("variant,backbone", [("stdc1_seg", "STDC1"), ("stdc2_seg", "STDC2")])
def test_stdcseg_matches_paddleseg(variant, backbone):
    paddle.seed(0)
    reference = PaddleSegSTDCSeg(19, getattr(paddleseg_stdcnet, backbone)())
    ours = paddle_stdc.create_model(variant, num_classes=19)
    assert type(ours).__module__.startswith("paddle_stdc")

    state = _random_state(reference)
    reference.set_state_dict(state)
    report = load_state(ours, state, strict=True)  # raises on missing/unexpected/mis-shaped
    assert report.exact and len(report.loaded) == len(reference.state_dict())

    reference.eval()
    ours.eval()
    x = paddle.to_tensor(np.random.RandomState(1).randn(1, 3, 96, 160).astype("float32"))
    with paddle.no_grad():
        ref_logit = reference(x)[0].numpy()
        our_logit = ours(x)[0].numpy()
    assert ref_logit.shape == our_logit.shape == (1, 19, 96, 160)
    np.testing.assert_allclose(our_logit, ref_logit, atol=1e-4, rtol=0)


@pytest.mark.parametrize("size", [(96, 160), (67, 101)], ids=["even", "odd"])
def test_bisenetv2_matches_paddleseg(size):
    paddle.seed(0)
    reference = PaddleSegBiSeNetV2(19)
    ours = paddle_stdc.create_model("bisenetv2", num_classes=19)
    assert type(ours).__module__ == "paddle_stdc.models.bisenetv2"
    state = _random_state(reference)
    reference.set_state_dict(state)
    report = load_state(ours, state, strict=True)
    assert report.exact and len(report.loaded) == len(reference.state_dict())
    reference.eval()
    ours.eval()
    x = paddle.to_tensor(np.random.RandomState(2).randn(1, 3, *size).astype("float32"))
    with paddle.no_grad():
        ref_logit = reference(x)[0].numpy()
        our_logit = ours(x)[0].numpy()
    assert ref_logit.shape == our_logit.shape == (1, 19, *size)
    np.testing.assert_allclose(our_logit, ref_logit, atol=1e-4, rtol=0)


def test_paddleseg_checkpoint_keys_round_trip():
    """Our state dict loads strictly into PaddleSeg's model too (checkpoints go both ways)."""
    ours = paddle_stdc.create_model("stdc1_seg", num_classes=19)
    reference = PaddleSegSTDCSeg(19, paddleseg_stdcnet.STDC1())
    assert load_state(reference, ours.state_dict(), strict=True).exact
