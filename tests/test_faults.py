"""Faults during training: a kill in the middle of a checkpoint save, and a NaN loss."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import numpy as np
import paddle
import pytest

from paddle_stdc.engine import checkpoint as ckpt
from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.trainer import TrainOptions, train

from .conftest import ROOT

# Trains 4 iterations saving at 2 and 4, and SIGKILLs itself half-way through writing
# iter_4's optimizer state: the state a machine reboot or OOM kill leaves behind.
KILLED_RUN = textwrap.dedent(
    """
    import os, signal, sys
    import paddle
    from paddle_stdc.engine import checkpoint
    from paddle_stdc.engine.config import Builder, load_config
    from paddle_stdc.engine.trainer import TrainOptions, train

    real_save = paddle.save

    def dying_save(obj, path, *args, **kwargs):
        if ".iter_4.tmp" in str(path) and str(path).endswith("model.pdopt"):
            with open(path, "wb") as f:
                f.write(b"half a file")
                f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
        return real_save(obj, path, *args, **kwargs)

    checkpoint.paddle.save = dying_save
    config, save_dir = sys.argv[1], sys.argv[2]
    builder = Builder(load_config(config, iters=4, pretrained=False))
    train(builder, TrainOptions(save_dir=save_dir, save_interval=2, log_iters=1, seed=3))
    print("not reached")
    """
)


def _run(config, save_dir, resume=None):
    builder = Builder(load_config(str(config), iters=4, pretrained=False))
    options = TrainOptions(save_dir=str(save_dir), save_interval=2, log_iters=1, seed=3,
                           resume_model=resume)  # fmt: skip
    train(builder, options)
    return {k: v.numpy().copy() for k, v in builder.model.state_dict().items()}


@pytest.mark.slow
def test_kill_during_save_leaves_last_complete_checkpoint_and_resume_is_exact(
    tiny_config, tmp_path
):
    killed = tmp_path / "killed"
    proc = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, str(tiny_config), str(killed)],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert proc.returncode == -9, proc.stderr[-2000:]  # really killed, mid-save
    assert (killed / ".iter_4.tmp" / "model.pdopt").read_bytes() == b"half a file"
    assert [p.name for p in ckpt.list_checkpoints(killed)] == ["iter_2"]
    assert not (killed / "iter_4").exists()

    # Resuming the killed run from its last complete checkpoint reaches the uninterrupted
    # run's weights, and its own save of iter_4 replaces the half-written temp folder.
    resumed = _run(tiny_config, killed, resume=str(killed / "iter_2"))
    uninterrupted = _run(tiny_config, tmp_path / "full")
    for key, value in resumed.items():
        np.testing.assert_allclose(value, uninterrupted[key], atol=1e-6, rtol=0, err_msg=key)
    assert [p.name for p in ckpt.list_checkpoints(killed)] == ["iter_2", "iter_4"]
    assert not (killed / ".iter_4.tmp").exists()


class _NanAfter(paddle.nn.Layer):
    """Wraps a loss; from call ``after`` on it returns NaN (a diverged run, on demand)."""

    def __init__(self, loss: paddle.nn.Layer, after: int) -> None:
        super().__init__()
        self.loss, self.after, self.calls = loss, after, 0

    def forward(self, logits, label):
        self.calls += 1
        value = self.loss(logits, label)
        return value * float("nan") if self.calls >= self.after else value


@pytest.mark.slow
def test_nan_loss_stops_naming_the_iteration_and_keeps_the_last_good_checkpoint(
    tiny_config, tmp_path
):
    builder = Builder(load_config(str(tiny_config), iters=6, pretrained=False))
    builder.loss["types"][0] = _NanAfter(builder.loss["types"][0], after=3)
    options = TrainOptions(save_dir=str(tmp_path), save_interval=2, log_iters=1, seed=0)
    with pytest.raises(FloatingPointError, match=r"at iteration 3; stopped without saving"):
        train(builder, options)
    assert [p.name for p in ckpt.list_checkpoints(tmp_path)] == ["iter_2"]
    saved = paddle.load(str(tmp_path / "iter_2" / "model.pdparams"))
    assert all(np.isfinite(v.numpy()).all() for v in saved.values())
