"""Checkpoint layout, atomic publication, pruning and loading."""

from __future__ import annotations

import json
import logging

import numpy as np
import paddle
import pytest

from paddle_stdc.engine import checkpoint as ckpt
from paddle_stdc.engine.checkpoint import TrainState


def _model_and_opt():
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    sched = paddle.optimizer.lr.PolynomialDecay(0.1, decay_steps=10)
    opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=model.parameters())
    model(paddle.randn([2, 3, 8, 8])).mean().backward()
    opt.step()
    sched.step()
    return model, opt


def test_layout_and_round_trip(tmp_path):
    model, opt = _model_and_opt()
    path = ckpt.save_checkpoint(tmp_path, model, opt, TrainState(7, 0.5, 7))
    assert path == tmp_path / "iter_7"
    assert {p.name for p in path.iterdir()} >= {"model.pdparams", "model.pdopt", "train_state.json"}
    assert json.loads((path / "train_state.json").read_text())["iteration"] == 7

    model2, opt2 = _model_and_opt()
    for p in model2.parameters():
        p.set_value(paddle.zeros_like(p))
    state = ckpt.load_checkpoint(path, model2, opt2)
    assert state == TrainState(7, 0.5, 7)
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    assert opt2.get_lr() == pytest.approx(opt.get_lr())


def test_failed_save_leaves_previous_checkpoint_and_no_partial_one(tmp_path, monkeypatch):
    model, opt = _model_and_opt()
    ckpt.save_checkpoint(tmp_path, model, opt, TrainState(1))

    def boom(obj, path, *args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(ckpt.paddle, "save", boom)
    with pytest.raises(OSError):
        ckpt.save_checkpoint(tmp_path, model, opt, TrainState(2))
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["iter_1"]
    assert (tmp_path / "iter_1" / "model.pdparams").is_file()


def test_prune_keeps_newest(tmp_path):
    model, opt = _model_and_opt()
    for it in (2, 4, 10, 6):
        ckpt.save_checkpoint(tmp_path, model, opt, TrainState(it))
    ckpt.prune_checkpoints(tmp_path, keep=2)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["iter_6", "iter_10"]


def test_resume_from_missing_dir_is_a_clear_error(tmp_path):
    model, opt = _model_and_opt()
    with pytest.raises(FileNotFoundError, match="model.pdparams"):
        ckpt.load_checkpoint(tmp_path / "iter_99", model, opt)


def test_paddleseg_checkpoint_without_state_file_uses_folder_name(tmp_path):
    model, opt = _model_and_opt()
    path = tmp_path / "iter_300"
    path.mkdir()
    paddle.save(model.state_dict(), str(path / "model.pdparams"))
    paddle.save(opt.state_dict(), str(path / "model.pdopt"))
    assert ckpt.load_checkpoint(path, model, opt).iteration == 300


def _ema_of(model):
    from paddle_stdc.engine.runtime import ModelEMA

    ema = ModelEMA(model)
    for value in ema.model.state_dict().values():
        value.set_value(value * 0.5 + 0.25)  # differs from the model
    return ema


def test_ema_round_trip_is_exact_with_paddlesegs_file_names(tmp_path):
    model, opt = _model_and_opt()
    ema = _ema_of(model)
    state = TrainState(4, 0.3, 2, 9, best_ema_miou=0.4, best_ema_iter=4)
    path = ckpt.save_checkpoint(tmp_path, model, opt, state, ema=ema.model)
    assert (path / "ema_model.pdparams").is_file()
    best = ckpt.save_best_ema_model(tmp_path, ema.model)
    assert best == tmp_path / "ema_best_model" and (best / "ema_model.pdparams").is_file()

    model2, opt2 = _model_and_opt()
    ema2 = _ema_of(model2)
    for value in ema2.model.state_dict().values():
        value.set_value(paddle.zeros_like(value))
    assert ckpt.load_checkpoint(path, model2, opt2, ema=ema2.model) == state
    want = ema.model.state_dict()
    for key, value in ema2.model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), want[key].numpy(), err_msg=key)


def test_resuming_without_an_ema_file_keeps_the_ema_and_warns(tmp_path, caplog):
    model, opt = _model_and_opt()
    path = ckpt.save_checkpoint(tmp_path, model, opt, TrainState(2))
    ema = _ema_of(model)
    before = {k: v.numpy().copy() for k, v in ema.model.state_dict().items()}
    log = logging.getLogger("paddle_stdc")  # may not propagate (cli.setup_logging)
    log.addHandler(caplog.handler)
    try:
        ckpt.load_checkpoint(path, model, opt, ema=ema.model)
    finally:
        log.removeHandler(caplog.handler)
    assert "no ema_model.pdparams" in caplog.text
    for key, value in ema.model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[key], err_msg=key)


def test_old_train_state_without_ema_fields_still_loads(tmp_path):
    model, opt = _model_and_opt()
    path = ckpt.save_checkpoint(tmp_path, model, opt, TrainState(3, 0.2, 3, 5))
    old = {"iteration": 3, "best_miou": 0.2, "best_iter": 3, "data_seed": 5}
    (path / "train_state.json").write_text(json.dumps(old))
    state = ckpt.load_checkpoint(path, model, opt)
    assert state == TrainState(3, 0.2, 3, 5) and state.best_ema_miou == -1.0


def _old_style_checkpoint(path, model, opt, kernel, kernel_name) -> None:
    """A checkpoint as written while DetailAggregateLoss.fuse_kernel was a trained parameter:
    losses.pdparams, the kernel in param_names.json and its velocity in model.pdopt, the
    kernel saved under the unique name ``kernel_name``."""
    path.mkdir(parents=True)
    paddle.save(model.state_dict(), str(path / "model.pdparams"))
    opt_state = {k.replace(kernel.name, kernel_name): v for k, v in opt.state_dict().items()}
    paddle.save(opt_state, str(path / "model.pdopt"))
    paddle.save({"3.fuse_kernel": kernel}, str(path / "losses.pdparams"))
    names = {f"model.{k}": p.name for k, p in model.named_parameters()}
    names["losses.3.fuse_kernel"] = kernel_name
    (path / "param_names.json").write_text(json.dumps(names))
    (path / "train_state.json").write_text(json.dumps({"iteration": 5, "data_seed": 4}))


def test_old_checkpoint_with_loss_parameters_resumes(tmp_path):
    model2, opt2 = _model_and_opt()  # the resuming run, built first: other parameter names
    paddle.seed(0)
    model = paddle.nn.Sequential(paddle.nn.Conv2D(3, 4, 3), paddle.nn.BatchNorm2D(4))
    kernel = paddle.create_parameter([1, 3, 1, 1], "float32")
    sched = paddle.optimizer.lr.PolynomialDecay(0.1, decay_steps=10)
    params = model.parameters() + [kernel]
    opt = paddle.optimizer.Momentum(sched, momentum=0.9, parameters=params, weight_decay=0.01)
    (model(paddle.randn([2, 3, 8, 8])).mean() + kernel.sum()).backward()
    opt.step()
    # In the old run the kernel's unique name is one the resuming run's conv weight now has:
    # its velocity must not land on that weight.
    taken = model2[0].weight.name
    _old_style_checkpoint(tmp_path / "iter_5", model, opt, kernel, taken)
    assert f"{taken}_velocity_0" in paddle.load(str(tmp_path / "iter_5/model.pdopt"))
    state = ckpt.load_checkpoint(tmp_path / "iter_5", model2, opt2)
    assert state.iteration == 5 and state.data_seed == 4
    for (k, a), b in zip(model.state_dict().items(), model2.state_dict().values()):
        np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=k)
    new_state = opt2.state_dict()
    for key, p in model.named_parameters():  # the model's velocities, under the new names
        if p.stop_gradient:
            continue
        p2 = dict(model2.named_parameters())[key]
        (old,) = [v for k, v in opt.state_dict().items() if k.startswith(p.name + "_velocity")]
        (new,) = [v for k, v in new_state.items() if k.startswith(p2.name + "_velocity")]
        np.testing.assert_array_equal(new.numpy(), old.numpy())
    assert opt2.get_lr() == pytest.approx(opt.get_lr())
    # Saving again writes the new layout: no losses.pdparams, no loss names.
    path = ckpt.save_checkpoint(tmp_path / "new", model2, opt2, state)
    assert not (path / "losses.pdparams").exists()
    assert all(k.startswith("model.") for k in json.loads((path / "param_names.json").read_text()))
