"""Every registered model: shapes, training outputs, gradients."""

from __future__ import annotations

import numpy as np
import paddle
import pytest

import paddle_stdc
from paddle_stdc.engine.config import Builder, load_config

from .conftest import all_configs

# ResNet-50 cases take seconds each: the slow tier
MODELS = [
    pytest.param(name, marks=pytest.mark.slow) if name.endswith("r50") else name
    for name in paddle_stdc.list_models()
]


def test_registry_is_populated():
    assert {"stdc1_seg", "stdc2_seg"} <= set(paddle_stdc.list_models())


def test_unknown_model_names_the_choices():
    with pytest.raises(KeyError, match="stdc1_seg"):
        paddle_stdc.create_model("stdc3_seg")


@pytest.mark.parametrize("name", MODELS)
@pytest.mark.parametrize("size", [(64, 128), (67, 101)], ids=["even", "odd"])
def test_eval_forward_returns_one_logit_at_input_size(name, size):
    paddle.seed(0)
    model = paddle_stdc.create_model(name, num_classes=5)
    model.eval()
    with paddle.no_grad():
        out = model(paddle.randn([1, 3, *size]))
    assert isinstance(out, list) and len(out) == 1
    assert list(out[0].shape) == [1, 5, *size]
    assert np.isfinite(out[0].numpy()).all()


@pytest.mark.parametrize("name", MODELS)
def test_training_outputs_are_named_and_backward_reaches_every_trainable_parameter(name):
    paddle.seed(0)
    model = paddle_stdc.create_model(name, num_classes=4)
    model.train()
    outputs = model(paddle.randn([2, 3, 64, 96]))
    assert len(outputs) == len(model.train_output_names)
    for out, out_name in zip(outputs, model.train_output_names):
        expected_c = 1 if out_name.startswith("detail") else 4
        assert out.shape[:2] == [2, expected_c], out_name
    sum(o.square().mean() for o in outputs).backward()
    trainable = [(n, p) for n, p in model.named_parameters() if not p.stop_gradient]
    assert trainable
    for pname, param in trainable:
        assert param.grad is not None, f"no gradient reaches {pname}"
        assert np.isfinite(param.grad.numpy()).all(), f"non-finite gradient in {pname}"


@pytest.mark.parametrize("config", all_configs(), ids=lambda p: p.stem)
def test_training_outputs_match_the_config_loss_list(config):
    builder = Builder(load_config(str(config), pretrained=False))
    model = builder.model
    n_losses = len(builder.loss["types"])
    assert len(model.train_output_names) == n_losses == len(builder.loss["coef"])
    model.train()
    outputs = model(paddle.randn([2, 3, 64, 64]))
    assert len(outputs) == n_losses
