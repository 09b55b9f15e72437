"""Weights resolution: local files, archives, and a clear offline error."""

from __future__ import annotations

import socket
import tarfile

import paddle
import pytest

from paddle_stdc.utils.download import WeightsUnavailableError, resolve_weights
from paddle_stdc.weights import load_pretrained


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_download_fails_fast_with_instructions(tmp_path, monkeypatch):
    monkeypatch.setenv("PADDLE_STDC_HOME", str(tmp_path))
    url = f"http://127.0.0.1:{_closed_port()}/paddleseg/dygraph/STDCNet1.tar.gz"
    with pytest.raises(WeightsUnavailableError) as err:
        resolve_weights(url, timeout=5)
    msg = str(err.value)
    assert url in msg
    assert "pretrained=None" in msg and "/path/to/model.pdparams" in msg
    assert not list(tmp_path.rglob("*.part"))  # nothing half-written left behind


def test_missing_local_file_names_it(tmp_path):
    with pytest.raises(WeightsUnavailableError, match="nope.pdparams"):
        resolve_weights(str(tmp_path / "nope.pdparams"))


def test_archive_and_folder_are_resolved(tmp_path):
    layer = paddle.nn.Linear(2, 3)
    inner = tmp_path / "STDCNet1"
    inner.mkdir()
    paddle.save(layer.state_dict(), str(inner / "model.pdparams"))
    archive = tmp_path / "STDCNet1.tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(inner, arcname="STDCNet1")
    assert resolve_weights(str(archive)).name == "model.pdparams"
    assert resolve_weights(str(inner)) == inner / "model.pdparams"
    other = paddle.nn.Linear(2, 3)
    report = load_pretrained(other, str(archive), strict=True)
    assert report.exact and len(report.loaded) == 2


def test_weights_of_another_model_are_rejected(tmp_path):
    path = tmp_path / "other.pdparams"
    paddle.save(paddle.nn.Conv2D(1, 1, 1).state_dict(), str(path))
    with pytest.raises(ValueError, match="none of the 2 tensors"):
        load_pretrained(paddle.nn.Linear(2, 3), str(path))
