"""HTTP serving on 127.0.0.1: good, bad, oversized and concurrent requests; shutdown."""

from __future__ import annotations

import io
import json
import threading
import urllib.error
import urllib.request

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image

import paddle_stdc
from deploy.serving.load_test import run_load
from deploy.serving.server import build_server
from paddle_stdc.export import NORMALIZE_DEFAULT, export_model


@pytest.fixture(scope="module")
def export_dir(tmp_path_factory):
    paddle.seed(0)
    model = paddle_stdc.create_model("stdc1_seg", num_classes=4)
    out = tmp_path_factory.mktemp("export")
    export_model(model, out, NORMALIZE_DEFAULT, 4, palette=np.eye(4, 3, dtype=int) * 200)
    return out


def _serve(export_dir, **kw):
    server = build_server(str(export_dir), port=0, **kw)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    return server, thread, f"http://127.0.0.1:{server.server_address[1]}"


def _post(url: str, body: bytes, timeout: float = 60):
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.headers.get("Content-Type"), resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type"), err.read()


def _png(h=48, w=80) -> bytes:
    image = np.random.RandomState(0).randint(0, 255, (h, w, 3)).astype(np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def test_endpoints(export_dir):
    server, thread, base = _serve(export_dir, max_bytes=200_000)
    try:
        with urllib.request.urlopen(base + "/health", timeout=10) as resp:
            assert json.loads(resp.read())["status"] == "ok"
        status, ctype, body = _post(base + "/predict", _png())
        assert status == 200 and ctype == "image/png"
        mask = np.asarray(Image.open(io.BytesIO(body)))
        assert mask.shape == (48, 80) and mask.max() < 4
        status, _, body = _post(base + "/predict?format=json", _png())
        hist = json.loads(body)
        assert status == 200 and sum(hist["histogram"].values()) == 48 * 80
        status, _, body = _post(base + "/predict", b"definitely not an image")
        assert status == 400 and "decodable" in json.loads(body)["error"]
        status, _, _ = _post(base + "/predict", b"x" * 200_001)
        assert status == 413
        status, _, _ = _post(base + "/nowhere", _png())
        assert status == 404
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    assert not thread.is_alive()


def test_full_queue_answers_503_and_nothing_hangs(export_dir):
    # One predictor, nobody may wait: concurrent requests beyond the first get 503 at once.
    server, thread, base = _serve(export_dir, workers=1, max_queue=0)
    try:
        body = _png(256, 512)
        report = run_load(base + "/predict", body, concurrency=6, requests=18, timeout=60)
        counts = report["status_counts"]
        assert set(counts) <= {"200", "503"}, counts
        assert counts.get("200", 0) >= 1 and counts.get("503", 0) >= 1, counts
        assert report["p50_ms"] > 0
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=30)
    assert not thread.is_alive()
