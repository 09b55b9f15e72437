"""Quiet by default: Paddle's ccache and OMP_NUM_THREADS notices and PaddleSeg's num_classes
notice are held back at their source; --verbose brings them back."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

import pytest

from paddle_stdc.utils import quiet

from .conftest import ROOT

CCACHE = "No ccache found"
OMP = "PLEASE USE OMP_NUM_THREADS WISELY"
NUM_CLASSES = "Add the `num_classes` in train_dataset"


@pytest.fixture()
def fresh(monkeypatch):
    """quiet's state, restored after the test."""
    monkeypatch.setitem(quiet._state, "verbose", False)
    monkeypatch.setattr(quiet, "HELD", [])


def test_paddleseg_notice_held_back_in_its_modules_only(fresh, capsys):
    from paddleseg.cvlibs import builder, config_checker
    from paddleseg.utils import logger

    assert isinstance(builder.logger, quiet._PaddleSegLogger)
    assert isinstance(config_checker.logger, quiet._PaddleSegLogger)
    builder.logger.warning(f"{NUM_CLASSES} class to model config.")
    builder.logger.warning("something else")
    logger.warning(f"{NUM_CLASSES} (from another module: not filtered)")
    out = capsys.readouterr().out
    assert "something else" in out and "another module" in out
    assert out.count(NUM_CLASSES) == 1
    quiet.set_verbose(True)
    assert f"{NUM_CLASSES} class to model config." in capsys.readouterr().out  # replayed
    builder.logger.warning(f"{NUM_CLASSES} again")
    assert "again" in capsys.readouterr().out


def test_stderr_filter_holds_back_only_the_omp_lines(fresh):
    import io

    target = io.StringIO()
    stream = quiet._StderrFilter(target)
    stream.write("WARNING: OMP_NUM_THREADS set to 2, not 1. The computation speed ...\n")
    stream.write(f"{OMP}.\nother line\npartial")
    stream.flush()
    assert target.getvalue() == "other line\npartial"
    assert [kind for kind, _ in quiet.HELD] == ["stderr", "stderr"]


def test_building_a_cityscapes_model_is_quiet(fresh, capsys):
    from paddle_stdc.engine.config import Builder, load_config

    cfg = load_config(str(ROOT / "configs/stdc1_seg_cityscapes_1024x512_80k.yml"), pretrained=False)
    assert "num_classes" not in cfg.dic["model"]
    assert Builder(cfg).model.num_classes == 19  # PaddleSeg still fills it in
    assert NUM_CLASSES not in capsys.readouterr().out
    quiet.set_verbose(True)
    assert NUM_CLASSES in capsys.readouterr().out


def _check_dataset(tmp_path, *extra: str) -> str:
    from paddle_stdc.data.prepare import write_split_lists
    from paddle_stdc.data.synthetic import make_synthetic_camvid

    root = tmp_path / "camvid"
    if not root.exists():
        make_synthetic_camvid(root, {"train": 2, "val": 1}, size=(32, 24))
        write_split_lists(root, {"train": ("train", "trainannot"), "val": ("val", "valannot")},
                          list_dir=root / "lists")  # fmt: skip
    cmd = [sys.executable, str(ROOT / "tools" / "check_dataset.py"), "--num_workers", "1",
           "--config", str(ROOT / "configs/custom/stdc1_seg_camvid_480x360.yml"), "--opts",
           f"train_dataset.dataset_root={root}", f"train_dataset.train_path={root}/lists/train.txt",
           f"val_dataset.dataset_root={root}", f"val_dataset.val_path={root}/lists/val.txt",
           *extra]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "2"}  # threads set on purpose
    env.pop("PYTHONWARNINGS", None)
    done = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout + done.stderr


@pytest.mark.slow
def test_tools_are_quiet_by_default_and_verbose_on_request(tmp_path):
    """check_dataset.py loads a Dataset-type config without model.num_classes (PaddleSeg's
    config checker fills it in, with its notice) under OMP_NUM_THREADS=2."""
    quiet_log = _check_dataset(tmp_path)
    assert "train_dataset (Dataset, train): 2 samples, 0 problems" in quiet_log
    for message in (CCACHE, OMP, NUM_CLASSES, "OMP_NUM_THREADS set to 2"):
        assert message not in quiet_log
    verbose_log = _check_dataset(tmp_path, "--verbose")
    assert OMP in verbose_log and "OMP_NUM_THREADS set to 2" in verbose_log
    assert NUM_CLASSES in verbose_log
    if shutil.which("ccache") is None:  # Paddle warns only when ccache is missing
        assert CCACHE in verbose_log
