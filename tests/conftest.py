"""Shared fixtures: generated Cityscapes-layout data and quiet, deterministic Paddle."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("FLAGS_call_stack_level", "2")

ROOT = Path(__file__).resolve().parents[1]
CONFIG_DIR = ROOT / "configs"


def all_configs() -> list:
    """Every user-facing config (not the `_base_` fragments)."""
    return sorted(p for p in CONFIG_DIR.rglob("*.yml") if "_base_" not in p.parts)


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    from paddle_stdc.data.synthetic import make_synthetic_cityscapes

    root = tmp_path_factory.mktemp("synthetic_cityscapes")
    return make_synthetic_cityscapes(root, num_train=4, num_val=2, size=(128, 64), seed=0)
