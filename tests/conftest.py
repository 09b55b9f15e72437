"""Shared fixtures: generated Cityscapes-layout data and quiet, deterministic Paddle.

The suite runs on every core with pytest-xdist (``-n auto --dist loadgroup`` in
pyproject's ``addopts``; ``-n 0`` or ``-p no:xdist`` runs it in one process). Each worker
gets one compute thread (OMP_NUM_THREADS=1, which ``paddle_stdc.engine.runtime``'s thread
rule honours, in this process and in the tools the tests start), so N workers never run
more than N busy threads. Tests sharing one server are grouped: ``xdist_group("serving")``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import pytest

os.environ.setdefault("FLAGS_call_stack_level", "2")

ROOT = Path(__file__).resolve().parents[1]


def pytest_addoption(parser: pytest.Parser, pluginmanager: pytest.PytestPluginManager) -> None:
    """Without pytest-xdist (``-p no:xdist``, or not installed) accept and ignore the
    ``--numprocesses`` and ``--dist`` of pyproject's ``addopts`` (spelled long for this: pytest
    reserves ``-n`` to plugins), so the suite still runs, in one process."""
    if not pluginmanager.has_plugin("xdist"):
        group = parser.getgroup("xdist-absent", "pytest-xdist is not active: ignored")
        group.addoption("--numprocesses", dest="numprocesses", default=None)
        group.addoption("--dist", dest="dist", default="no")


def pytest_configure(config: pytest.Config) -> None:
    """With more than one xdist worker, one compute thread per worker. Set here in the
    controller, before the workers start, so it is in their starting environment: the thread
    rule then sees it whichever of Paddle and paddle_stdc a test module imports first."""
    workers = getattr(config.option, "numprocesses", None)
    if isinstance(workers, int) and workers > 1 and config.option.dist != "no":
        os.environ["OMP_NUM_THREADS"] = "1"


CONFIG_DIR = ROOT / "configs"


def all_configs() -> list:
    """Every user-facing config (not the `_base_` fragments)."""
    return sorted(p for p in CONFIG_DIR.rglob("*.yml") if "_base_" not in p.parts)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from paddle_stdc.data.synthetic import make_synthetic_cityscapes

    root = tmp_path_factory.mktemp("synthetic_cityscapes")
    return make_synthetic_cityscapes(root, num_train=4, num_val=2, size=(128, 64), seed=0)


TINY = """
_base_: {base}
batch_size: 2
iters: 4
train_dataset:
  dataset_root: {root}
  transforms:
    - type: RandomPaddingCrop
      crop_size: [64, 64]
    - type: RandomHorizontalFlip
    - type: RandomDistort
      brightness_range: 0.4
    - type: Normalize
val_dataset:
  dataset_root: {root}
loss:
  types:
    - type: OhemCrossEntropyLoss
      min_kept: 100
    - type: OhemCrossEntropyLoss
      min_kept: 100
    - type: OhemCrossEntropyLoss
      min_kept: 100
    - type: DetailAggregateLoss
  coef: [1, 1, 1, 1]
"""


@pytest.fixture()
def tiny_config(tmp_path, synthetic_root) -> Path:
    """A 4-iteration STDC1 config on the session's generated data."""
    base = ROOT / "configs" / "quickstart" / "stdc1_seg_synthetic_512x256.yml"
    path = tmp_path / "tiny.yml"
    path.write_text(TINY.format(base=base, root=synthetic_root))
    return path


@pytest.fixture()
def own_root(tmp_path, synthetic_root) -> Path:
    """A private copy of the generated data, for tests that damage files."""
    root = tmp_path / "data"
    shutil.copytree(synthetic_root, root)
    return root


@pytest.fixture(autouse=True)
def _restore_paddle_stdc_logger():
    """A tool's main() run in-process (``setup_logging``) points the ``paddle_stdc`` logger at
    that test's captured stdout and stops propagation; later tests' ``caplog`` would see
    nothing and the handler would write to a closed file. Restore it after every test."""
    log = logging.getLogger("paddle_stdc")
    saved = (list(log.handlers), log.propagate, log.level)
    yield
    log.handlers[:] = saved[0]
    log.propagate = saved[1]
    log.setLevel(saved[2])
