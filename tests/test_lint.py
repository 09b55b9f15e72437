"""The house style is enforced: ruff lint and format over the whole repository."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest

from .conftest import ROOT


def _ruff(*args: str) -> subprocess.CompletedProcess:
    exe = shutil.which("ruff")
    cmd = [exe] if exe else [sys.executable, "-m", "ruff"]
    return subprocess.run(
        [*cmd, *args], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False
    )


@pytest.mark.parametrize("args", [("check", "."), ("format", "--check", ".")], ids=str)
def test_ruff(args):
    proc = _ruff(*args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
