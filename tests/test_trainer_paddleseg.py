"""PaddleSeg 2.8's training habits: MixedLoss, --use_ema and --profiler_options."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import paddle
import pytest
from visualdl import LogReader

from paddle_stdc.engine import trainer as trainer_mod
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.runtime import (
    ModelEMA,
    ProfilerOptions,
    ProfilerOptionsError,
    ema_decay,
)
from paddle_stdc.engine.trainer import TrainOptions, compute_losses, train
from paddle_stdc.losses import CrossEntropyLoss, MixedLoss, OhemCrossEntropyLoss

from .conftest import ROOT

MIXED = """    - type: MixedLoss
      losses:
        - type: CrossEntropyLoss
        - type: OhemCrossEntropyLoss
          min_kept: 100
      coef: [0.7, 0.3]
"""


def _run(config: Path, save_dir: Path, iters: int = 4, resume=None, **kw):
    builder = Builder(load_config(str(config), iters=iters, pretrained=False))
    options = TrainOptions(
        save_dir=str(save_dir), save_interval=2, log_iters=1, seed=3, resume_model=resume, **kw
    )
    return builder, train(builder, options)


def _state(layer) -> dict:
    return {k: v.numpy().copy() for k, v in layer.state_dict().items()}


# --- MixedLoss in the trainer -------------------------------------------------------------


def test_compute_losses_splits_a_mixed_loss_into_its_weighted_parts():
    paddle.seed(0)
    logit = paddle.randn([2, 3, 8, 8])
    label = paddle.randint(0, 3, [2, 8, 8])
    ce, ohem = CrossEntropyLoss(), OhemCrossEntropyLoss(min_kept=10)
    mixed = MixedLoss([ce, ohem], [0.7, 0.3])
    losses = {"types": [mixed, ce], "coef": [2.0, 1.0]}
    got = [float(v) for v in compute_losses([logit, logit], label, losses)]
    want = [2.0 * 0.7 * float(ce(logit, label)), 2.0 * 0.3 * float(ohem(logit, label))]
    np.testing.assert_allclose(got, want + [float(ce(logit, label))], rtol=1e-6)


@pytest.mark.slow
def test_a_config_with_mixed_loss_trains(tiny_config, tmp_path):
    config = tmp_path / "mixed.yml"
    text = tiny_config.read_text()
    first = "    - type: OhemCrossEntropyLoss\n      min_kept: 100\n"
    config.write_text(text.replace(first, MIXED, 1))
    builder, result = _run(config, tmp_path / "out", iters=2, use_vdl=True)
    assert result.state.iteration == 2
    assert isinstance(builder.loss["types"][0], MixedLoss)
    (log_file,) = (tmp_path / "out").glob("vdlrecords.*.log")
    tags = set(LogReader(file_path=str(log_file)).get_tags()["scalar"])
    # PaddleSeg's numbering: the mixed loss's two parts, then the three other outputs.
    assert {f"Train/loss_{i}" for i in range(5)} <= tags and "Train/loss_5" not in tags


# --- EMA ---------------------------------------------------------------------------------


def test_ema_decay_is_paddlesegs_warm_up():
    assert ema_decay(1) == 0.5 and ema_decay(3) == 0.75
    assert ema_decay(999) == 0.999 and ema_decay(50_000) == 0.999


def test_ema_after_n_steps_equals_the_formula_in_numpy():
    paddle.seed(1)
    model = paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.BatchNorm1D(4))
    opt = paddle.optimizer.SGD(0.5, parameters=model.parameters())
    ema = ModelEMA(model)
    expected = _state(model)
    for step in range(1, 8):
        model(paddle.randn([5, 3])).square().mean().backward()
        opt.step()
        opt.clear_grad()
        ema.update(model, step)
        d = min(1.0 - 1.0 / (step + 1), 0.999)
        current = _state(model)
        expected = {
            k: v * np.float32(d) + current[k] * np.float32(1.0 - d) for k, v in expected.items()
        }
    got = _state(ema.model)
    assert got.keys() == expected.keys()
    for key, value in expected.items():  # BatchNorm running statistics included
        np.testing.assert_allclose(got[key], value, rtol=1e-6, atol=1e-7, err_msg=key)
    assert not np.allclose(got["0.weight"], _state(model)["0.weight"])
    assert all(p.stop_gradient for p in ema.model.parameters()) and not ema.model.training


@pytest.mark.slow
def test_use_ema_saves_evaluates_and_resumes_exactly(tiny_config, tmp_path, monkeypatch):
    evaluated = []
    real_evaluate = trainer_mod.evaluate

    def spy(model, *args, **kwargs):
        evaluated.append(model)
        return real_evaluate(model, *args, **kwargs)

    monkeypatch.setattr(trainer_mod, "evaluate", spy)
    full_dir = tmp_path / "full"
    builder, result = _run(tiny_config, full_dir, do_eval=True, use_vdl=True, use_ema=True)
    ema_model = result.ema.model
    # PaddleSeg 2.8's files: iter_N/ema_model.pdparams and ema_best_model/ema_model.pdparams.
    for it in (2, 4):
        assert (full_dir / f"iter_{it}" / "ema_model.pdparams").is_file()
    assert (full_dir / "ema_best_model" / "ema_model.pdparams").is_file()
    saved = paddle.load(str(full_dir / "iter_4" / "ema_model.pdparams"))
    ema_weights = _state(ema_model)
    for key, value in saved.items():
        np.testing.assert_array_equal(value.numpy(), ema_weights[key], err_msg=key)
    model_weights = _state(builder.model)
    assert any(not np.allclose(model_weights[k], v) for k, v in ema_weights.items())

    # Each save evaluates the model and then the EMA model, whose result is reported.
    assert evaluated[1::2] == [ema_model, ema_model] and ema_model not in evaluated[0::2]
    assert result.last_ema_eval is not None
    assert result.state.best_ema_iter in (2, 4) and result.state.best_ema_miou >= 0
    (log_file,) = full_dir.glob("vdlrecords.*.log")
    tags = set(LogReader(file_path=str(log_file)).get_tags()["scalar"])
    assert {"Evaluate/Ema_mIoU", "Evaluate/Ema_Acc", "Evaluate/mIoU"} <= tags

    # Resuming iter_2 restores the EMA: after iteration 4 it equals the uninterrupted run's.
    _, resumed = _run(tiny_config, tmp_path / "resumed", resume=str(full_dir / "iter_2"),
                      use_ema=True)  # fmt: skip
    for key, value in _state(resumed.ema.model).items():
        np.testing.assert_allclose(value, ema_weights[key], atol=1e-6, rtol=0, err_msg=key)


# --- profiler ----------------------------------------------------------------------------


def test_profiler_options_parse_paddlesegs_format():
    opts = ProfilerOptions.parse("batch_range=[50, 60]; tracer_option=OpDetail; profile_path=a/b")
    assert opts.batch_range == (50, 60) and opts.tracer_option == "OpDetail"
    assert opts.profile_path == "a/b" and opts.exit_on_finished and opts.state == "All"
    assert not ProfilerOptions.parse("exit_on_finished=false").exit_on_finished


@pytest.mark.parametrize(
    "text, message",
    [
        ("batch_range=[5,2]", "0 <= start < end"),
        ("batch_range=[1]", "0 <= start < end"),
        ("sorted_key=speed", "use one of"),
        ("profile_pth=x", "unknown profiler option 'profile_pth'"),
        ("batch_range", "is not key=value"),
    ],
)
def test_bad_profiler_options_are_one_line_errors(text, message):
    with pytest.raises(ProfilerOptionsError, match=message):
        ProfilerOptions.parse(text)


def _train_tool():
    spec = importlib.util.spec_from_file_location("train_tool", ROOT / "tools" / "train.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_train_cli_rejects_bad_profiler_options_with_a_usage_line(capsys):
    tool = _train_tool()
    with pytest.raises(SystemExit) as exc:
        tool.parse_args(["--config", "x.yml", "--profiler_options", "batch_range=[3,1]"])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert ": error: argument --profiler_options: profiler option batch_range=[3,1]" in err
    args = tool.parse_args(["--config", "x.yml", "--use_ema", "--profiler_options", "state=CPU"])
    assert args.use_ema and args.profiler_options == "state=CPU"


def test_profiler_range_beyond_the_run_is_an_error():
    options = TrainOptions(profiler_options="batch_range=[2,9]")
    with pytest.raises(ProfilerOptionsError, match="ends after the 4 iterations"):
        trainer_mod._make_profiler(options, remaining=4, rank=0)


def _summary_steps(path: Path) -> int:
    line = next(ln for ln in path.read_text().splitlines() if ln.startswith("ProfileStep"))
    return int(line.split()[1])


@pytest.mark.slow
@pytest.mark.parametrize("exit_on_finished", [True, False])
def test_profiler_writes_trace_and_summary(tiny_config, tmp_path, exit_on_finished):
    prof = tmp_path / "prof" / "train.profile"
    text = f"batch_range=[1,3];profile_path={prof};exit_on_finished={exit_on_finished}"
    _, result = _run(tiny_config, tmp_path / "out", profiler_options=text)
    # Batches 1 and 2 (0-based) are recorded; PaddleSeg's default stops training after them.
    assert result.state.iteration == (3 if exit_on_finished else 4)
    assert prof.is_file() and prof.stat().st_size > 0
    summary = Path(f"{prof}.summary.txt")
    assert "Operator" in summary.read_text() and _summary_steps(summary) == 2
    assert (tmp_path / "out" / "iter_2").is_dir()
    assert (tmp_path / "out" / "iter_4").is_dir() != exit_on_finished


def test_train_options_come_from_the_config_as_in_the_cli():
    """The engine reads run options from the config, so train() from Python (quickstart) runs
    configs/bisenetv2-fp16_* in fp16 as tools/train.py does; a given override wins."""
    from paddle_stdc.engine.config import load_config
    from paddle_stdc.engine.trainer import TrainOptions

    cfg = load_config("configs/bisenetv2-fp16_cityscapes_1024x1024_160k.yml", pretrained=False)
    options = TrainOptions.from_config(cfg, save_dir="out", precision=None)
    assert (options.precision, options.save_dir, options.eval_kwargs) == ("fp16", "out", {})
    seg50 = load_config(
        "configs/stdc1_seg50_cityscapes_1024x512_60k_official.yml", pretrained=False
    )
    assert TrainOptions.from_config(seg50).eval_kwargs["eval_scale"] == 0.5
    assert TrainOptions.from_config(cfg, precision="fp32").precision == "fp32"
    with pytest.raises(TypeError, match="no option precison"):
        TrainOptions.from_config(cfg, precison="fp32")
