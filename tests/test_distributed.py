"""Two-process data-parallel training on CPU with Paddle's own launcher (gloo)."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import paddle
import pytest

from paddle_stdc.engine.config import Builder, load_config
from paddle_stdc.engine.evaluator import evaluate

from .conftest import ROOT

FINGERPRINT = re.compile(r"rank (\d) fingerprints: parameters (\w+), buffers (\w+)")


@pytest.mark.slow
def test_two_process_launch(tiny_config, tmp_path):
    save_dir, log_dir = tmp_path / "out", tmp_path / "log"
    cmd = [sys.executable, "-m", "paddle.distributed.launch", "--nproc_per_node", "2",
           "--log_dir", str(log_dir), str(ROOT / "tools" / "train.py"),
           "--config", str(tiny_config), "--save_dir", str(save_dir), "--iters", "4",
           "--save_interval", "4", "--do_eval", "--use_vdl", "--seed", "0", "--device", "cpu",
           "--no_pretrained", "--log_iters", "1"]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=600)
    logs = [(log_dir / f"workerlog.{r}").read_text() for r in (0, 1)]
    assert proc.returncode == 0, proc.stdout[-2000:] + logs[0][-2000:] + logs[1][-2000:]

    # Both ranks trained the same parameters and, after the save-time sync, BN statistics.
    prints = {int(m.group(1)): m.groups()[1:] for log in logs for m in FINGERPRINT.finditer(log)}
    assert set(prints) == {0, 1} and prints[0] == prints[1]
    assert "SyncBatchNorm has no kernel on cpu" in logs[0]

    # Only rank 0 writes: one VisualDL file, and only rank 0 reports saving the best model.
    assert len(list(save_dir.glob("vdlrecords.*.log"))) == 1
    assert (save_dir / "iter_4" / "model.pdparams").is_file()
    assert "was saved at iter 4" in logs[0] and "was saved at iter" not in logs[1]
    assert "[EVAL] Class IoU:" in logs[0] and "Class IoU" not in logs[1]  # the named table
    assert "\nroad " in logs[0]

    # The evaluation over both ranks' shards equals a one-process evaluation of the checkpoint.
    assert "#Images: 2" in logs[0]
    state = json.loads((save_dir / "iter_4" / "train_state.json").read_text())
    builder = Builder(load_config(str(tiny_config), pretrained=False))
    builder.model.set_state_dict(paddle.load(str(save_dir / "iter_4" / "model.pdparams")))
    single = evaluate(builder.model, builder.val_dataset)
    assert single.num_samples == 2
    assert state["best_miou"] == pytest.approx(single.miou, abs=1e-12)
