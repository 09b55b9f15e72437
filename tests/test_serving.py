"""Serving on Ray Serve (deploy/serving): API, batching, limits, shutdown.

One server process (``deploy/serving/server.py`` on a local Ray, 127.0.0.1, a free port) serves
an STDC1 export of the quick start's Cityscapes-layout config (19 named classes) for the whole
session: :func:`shared_server` starts it once and other test
modules reuse it (``from tests.test_serving import shared_server``). The graceful-shutdown test
starts a second one (Paddle backend) and stops it with SIGTERM. Requests that must be slow ask
for a model delay with ``X-Debug-Delay-Ms`` (honoured up to ``--debug_delay_ms``, test only).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import http.client
import io
import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, Optional, Tuple

import cv2
import numpy as np
import pytest
from PIL import Image

from deploy.schema import CITYSCAPES_CLASSES as CITYSCAPES
from deploy.serving.app import (
    API_SLACK,
    ServeSettings,
    choose_backend,
    deployment_options,
    replica_capacity,
)
from deploy.serving.batching import Batcher
from deploy.serving.codec import (
    RequestError,
    decode_image,
    header_pixels,
    parse_server_timing,
    server_timing,
    summary,
)
from deploy.serving.imageinfo import ImageHeaderError, image_size
from deploy.visual import palette_png

from .conftest import ROOT

# One worker runs every test of the session's server (this module and test_serving_page.py
# share it) under pytest-xdist: one server, one local Ray, not one per worker.
pytestmark = pytest.mark.xdist_group("serving")

SERVER = ROOT / "deploy" / "serving" / "server.py"
MAX_BYTES = 1_000_000
TIMEOUT_S = 5.0
SESSION_FLAGS = (
    "--cpu_threads",
    "1",
    "--max_batch_size",
    "4",
    "--batch_wait_ms",
    "20",
    "--max_queue",
    "4",
    "--max_bytes",
    str(MAX_BYTES),
    "--request_timeout_s",
    str(TIMEOUT_S),
    "--debug_delay_ms",
    "8000",
)


# ------------------------------------------------------------------------------ server


@dataclass
class ServerProcess:
    """A ``server.py`` child process and its URL; ``stop`` sends SIGTERM, then kills."""

    proc: subprocess.Popen
    url: str
    port: int
    log: Path

    def log_tail(self, n: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-n:] if self.log.exists() else ""

    def stop(self, timeout: float = 60.0) -> Optional[int]:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)  # its own group: Ray's children too
                self.proc.wait(30)
        return self.proc.returncode


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(export_dir: Path, log: Path, *flags: str, timeout: float = 180) -> ServerProcess:
    """Start ``server.py`` and poll ``/health`` until it answers 200 (or fail with its log)."""
    port = _free_port()
    cmd = [
        sys.executable,
        str(SERVER),
        "--export_dir",
        str(export_dir),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--num_cpus",
        "2",
        *flags,
    ]
    # --backend auto measures into a cache of the test's own (next to the log), not the user's
    env = {**os.environ, "PADDLE_STDC_CACHE": os.environ.get("PADDLE_STDC_CACHE",
                                                            str(log.parent / "cache"))}  # fmt: skip
    with open(log, "wb") as fh:
        proc = subprocess.Popen(
            cmd, cwd=ROOT, stdout=fh, stderr=subprocess.STDOUT, start_new_session=True, env=env
        )
    server = ServerProcess(proc, f"http://127.0.0.1:{port}", port, log)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}:\n{server.log_tail()}")
        try:  # the "serving" line comes once the signal handlers are in place
            if (
                "serving " in server.log_tail(10**6)
                and request(server.url, "GET", "/health", timeout=2)[0] == 200
            ):
                return server
        except OSError:
            pass
        time.sleep(0.25)
    server.stop()
    raise RuntimeError(f"server not healthy within {timeout} s:\n{server.log_tail()}")


QUICKSTART = ROOT / "configs" / "quickstart" / "stdc1_seg_synthetic_512x256.yml"
SAMPLE = ROOT / "deploy" / "serving" / "static" / "samples" / "street_1.jpg"


def street_weights(path: Path) -> Path:
    """STDC1 weights for the quick start's config (19 Cityscapes classes) that predict "road"
    on about half of the street sample, as a trained street model would: a random model's
    head with its road bias raised by the median margin on that sample."""
    import paddle

    from paddle_stdc.engine.config import Builder, load_config

    paddle.seed(0)
    model = Builder(load_config(str(QUICKSTART), pretrained=False)).model
    model.eval()
    x = (cv2.imread(str(SAMPLE)).astype("float32") / 127.5 - 1).transpose(2, 0, 1)[None]
    with paddle.no_grad():
        logits = model(paddle.to_tensor(x))[0].numpy()[0]
    margin = float(np.median(logits[1:].max(axis=0) - logits[0]))
    bias = model.conv_out.conv_out.bias
    bias.set_value(bias.numpy() + np.eye(1, len(logits), dtype="float32")[0] * margin)
    paddle.save(model.state_dict(), str(path))
    return path


def make_export(out: Path, fmt: str = "onnx") -> Path:
    """A Cityscapes-trained export as a user makes one: ``tools/export.py`` on the quick start's
    config (Cityscapes layout: deploy.yaml carries its 19 class names and palette) with
    :func:`street_weights`."""
    out.parent.mkdir(parents=True, exist_ok=True)
    weights = street_weights(out.parent / f"{out.name}_weights.pdparams")
    cmd = [sys.executable, str(ROOT / "tools" / "export.py"), "--config", str(QUICKSTART),
           "--model_path", str(weights), "--save_dir", str(out), "--format", fmt]  # fmt: skip
    proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


_SHARED: Dict[str, ServerProcess] = {}


def shared_server(tmp_root: Path) -> ServerProcess:
    """The session's server (started on first use, in ``tmp_root``); reuse it, never stop it
    yourself -- the ``serving_server`` fixture's teardown (or interpreter exit) stops it."""
    if "server" not in _SHARED or _SHARED["server"].proc.poll() is not None:
        export = make_export(Path(tmp_root) / "export")
        _SHARED["server"] = start_server(export, Path(tmp_root) / "server.log", *SESSION_FLAGS)
    return _SHARED["server"]


@pytest.fixture(scope="session")
def serving_server(tmp_path_factory) -> ServerProcess:
    server = shared_server(tmp_path_factory.mktemp("serving"))
    yield server
    assert server.stop() == 0, server.log_tail()


# ------------------------------------------------------------------------------ helpers


def request(
    base: str,
    method: str,
    path: str,
    body: Optional[bytes] = None,
    headers: Optional[Dict[str, str]] = None,
    timeout: float = 60,
):
    """(status, headers (lower-case names), body) over a fresh connection."""
    host, port = base.rsplit("/", 1)[-1].split(":")
    conn = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()


def post(server: ServerProcess, path: str, body: bytes, **headers: str):
    hdrs = {k.replace("_", "-"): v for k, v in headers.items()}
    return request(server.url, "POST", path, body, hdrs)


def png(h: int = 64, w: int = 64, seed: int = 0) -> bytes:
    image = np.random.RandomState(seed).randint(0, 255, (h, w, 3)).astype(np.uint8)
    return cv2.imencode(".png", image)[1].tobytes()


def _complete(received: bytes) -> bool:
    """Headers and the whole Content-Length body have arrived."""
    head, sep, body = received.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = re.search(rb"(?im)^content-length:\s*(\d+)", head)
    return length is None or len(body) >= int(length.group(1))


def raw_exchange(server: ServerProcess, data: bytes, timeout: float = 5) -> Tuple[int, bytes]:
    """Send raw bytes, read until the server closes or a full answer arrives: (status, bytes).

    A server that answers early (413 from the Content-Length) and closes may break the pipe
    before every byte is sent: the answer is still read."""
    with socket.create_connection(("127.0.0.1", server.port), timeout=timeout) as sock:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the server answered and closed before the whole body was sent
        received = b""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not _complete(received):
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:  # closed with unread bytes: keep what arrived
                break
            if not chunk:
                break
            received += chunk
    match = re.match(rb"HTTP/1\.[01] (\d{3})", received)
    assert match, f"no HTTP status line in {received[:200]!r}"
    return int(match.group(1)), received


@functools.lru_cache(maxsize=2)
def huge_png(width: int, height: int) -> bytes:
    """A valid PNG of width x height black pixels in a few hundred KB (zeros compress well)."""
    co = zlib.compressobj(9)
    row = b"\0" * (1 + 3 * width)
    data = b"".join(co.compress(row) for _ in range(height)) + co.flush()

    def chunk(kind: bytes, payload: bytes) -> bytes:
        crc = zlib.crc32(kind + payload) & 0xFFFFFFFF
        return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", crc)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


def peak_rss_mb(pid: int) -> float:
    """VmHWM (peak resident set) of a local process, in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} ([0-9.e+]+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


# ------------------------------------------------------------- header parser and codec


@pytest.mark.parametrize("ext", [".png", ".jpg", ".bmp", ".webp", ".tif"])
def test_image_size_reads_headers_of_every_format(ext):
    image = np.random.RandomState(0).randint(0, 255, (37, 53, 3)).astype(np.uint8)
    data = cv2.imencode(ext, image)[1].tobytes()
    assert image_size(data) == (53, 37)
    with pytest.raises(ImageHeaderError):
        image_size(data[:12])  # truncated header


def test_image_size_other_encoders_and_refusals():
    image = np.zeros((37, 53, 3), np.uint8)
    for fmt, kw in [("WEBP", {"lossless": True}), ("JPEG", {"progressive": True}), ("TIFF", {})]:
        buf = io.BytesIO()
        Image.fromarray(image).save(buf, fmt, **kw)
        assert image_size(buf.getvalue()) == (53, 37), fmt
    assert image_size(huge_png(12000, 12000)[:64]) == (12000, 12000)
    for bad in (b"", b"GIF89a....", b"\xff\xd8\xff\xda\x00\x02", b"\x89PNG\r\n\x1a\n\0\0\0\rIHDX"):
        with pytest.raises(ImageHeaderError):
            image_size(bad)


def test_decode_image_checks_pixels_before_decoding():
    with pytest.raises(RequestError) as err:
        decode_image(huge_png(12000, 12000), max_pixels=4096 * 4096)
    assert err.value.status == 413 and "12000x12000" in err.value.message
    with pytest.raises(RequestError) as err:
        decode_image(png()[:40] + b"\0" * 40, max_pixels=10**6)  # header fine, data broken
    assert err.value.status == 400
    assert decode_image(png(20, 30), max_pixels=600).shape == (20, 30, 3)
    # what decides decoding on the event loop or in a thread: the header's claim, no decode
    assert header_pixels(huge_png(12000, 12000)) == 12000 * 12000
    assert header_pixels(png(20, 30)) == 600 and header_pixels(b"junk") == 0


def test_png_and_summary():
    mask = np.array([[0, 1], [1, 3]], np.uint8)
    decoded = Image.open(io.BytesIO(palette_png(mask, [[0, 0, 0], [1, 2, 3]])))
    assert decoded.mode == "P" and (np.asarray(decoded) == mask).all()
    assert decoded.getpalette()[3:6] == [1, 2, 3]
    got = summary(mask, ["a", "b", "c", "d"], 1.234)
    assert got["height"] == 2 and got["latency_ms"] == 1.23
    assert got["classes"] == [
        {"id": 0, "pixels": 1, "share": 0.25, "name": "a"},
        {"id": 1, "pixels": 2, "share": 0.5, "name": "b"},
        {"id": 3, "pixels": 1, "share": 0.25, "name": "d"},
    ]


def test_server_timing_round_trip():
    header = server_timing({"read": 1.234, "model": 50.0})
    assert header == "read;dur=1.23, model;dur=50.00"
    assert parse_server_timing(header) == {"read": 1.23, "model": 50.0}
    assert parse_server_timing('cache;desc="hit", db;dur=2') == {"db": 2.0}


# --------------------------------------------------------------------------- batching


class _SlowModel:
    """A batch function for :class:`Batcher` that records its batches and takes ``run_s``."""

    def __init__(self, run_s: float = 0.05, fail: bool = False) -> None:
        self.run_s, self.fail, self.batches = run_s, fail, []

    def __call__(self, items):
        self.batches.append(list(items))
        time.sleep(self.run_s)
        if self.fail:
            raise RuntimeError("model broke")
        return [{"value": item * 10} for item in items]


def test_batcher_runs_a_lone_request_at_once():
    model = _SlowModel(run_s=0.0)

    async def main():
        batcher = Batcher(model, max_batch_size=8)  # default: no batch wait
        return await batcher.submit(3), batcher.pending

    result, pending = asyncio.run(main())
    assert result["value"] == 30 and result["batch"] == 1 and pending == 0
    assert result["wait_ms"] < 50  # no timed wait: just the loop's hand-over
    assert model.batches == [[3]]


def test_batcher_batches_what_queued_while_the_model_ran():
    """The first request runs alone; the 9 that arrive meanwhile form full batches of 4, 4, 1."""
    model = _SlowModel(run_s=0.2)

    async def main():
        batcher = Batcher(model, max_batch_size=4)
        first = asyncio.ensure_future(batcher.submit(0))
        await asyncio.sleep(0.05)  # the model is busy with request 0
        rest = [asyncio.ensure_future(batcher.submit(i)) for i in range(1, 10)]
        await asyncio.sleep(0)
        pending = batcher.pending
        return await asyncio.gather(first, *rest), pending

    results, pending = asyncio.run(main())
    assert pending == 10
    assert [r["value"] for r in results] == [i * 10 for i in range(10)]
    assert model.batches == [[0], [1, 2, 3, 4], [5, 6, 7, 8], [9]]
    assert [r["batch"] for r in results] == [1] + [4] * 8 + [1]


def test_batcher_wait_holds_a_batch_for_more_requests():
    model = _SlowModel(run_s=0.0)

    async def main():
        batcher = Batcher(model, max_batch_size=8, wait_s=0.2)
        first = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)
        second = asyncio.ensure_future(batcher.submit(2))
        return await asyncio.gather(first, second)

    first, second = asyncio.run(main())
    assert model.batches == [[1, 2]]
    assert first["wait_ms"] >= 150 and first["batch"] == 2


def test_batcher_drops_cancelled_requests_and_reports_errors():
    model = _SlowModel(run_s=0.2)

    async def main():
        batcher = Batcher(model, max_batch_size=4)
        busy = asyncio.ensure_future(batcher.submit(1))
        await asyncio.sleep(0.05)
        with pytest.raises(asyncio.TimeoutError):  # a deadline passes while it is queued
            await asyncio.wait_for(batcher.submit(2), timeout=0.05)
        kept = await asyncio.gather(busy, batcher.submit(3))
        model.fail = True
        with pytest.raises(RuntimeError, match="model broke"):
            await batcher.submit(4)
        return kept, batcher.pending

    kept, pending = asyncio.run(main())
    assert [r["value"] for r in kept] == [10, 30] and pending == 0
    assert model.batches == [[1], [3], [4]]  # request 2 never reached the model
    with pytest.raises(ValueError, match="max_batch_size"):
        Batcher(model, max_batch_size=0)


def test_backend_rule_and_replica_options():
    files = {"model": "model.json", "params": "model.pdiparams"}
    with_onnx, paddle_only = {**files, "onnx": "model.onnx"}, {**files, "onnx": None}
    assert choose_backend(ServeSettings("x"), with_onnx) == "auto"  # the replica measures
    assert choose_backend(ServeSettings("x", backend="paddle"), with_onnx) == "paddle"
    assert choose_backend(ServeSettings("x", backend="openvino", precision="bf16"),
                          with_onnx) == "openvino"  # fmt: skip
    with pytest.raises(ValueError, match="no Deploy.onnx_int8; run deploy/python/quantize.py"):
        choose_backend(ServeSettings("x", backend="onnxruntime", precision="int8"), with_onnx)
    with pytest.raises(ValueError, match="no Deploy.onnx; export with"):
        choose_backend(ServeSettings("x", backend="openvino"), paddle_only)
    with pytest.raises(ValueError, match="runs on cpu, not --device gpu"):
        choose_backend(ServeSettings("x", backend="onnxruntime", device="gpu"), with_onnx)
    with pytest.raises(ValueError, match="--backend auto: nothing here runs --precision int8"):
        choose_backend(ServeSettings("x", precision="int8"), with_onnx)
    gpu = deployment_options(ServeSettings("x", device="gpu", replicas=2))
    assert gpu["ray_actor_options"]["num_gpus"] == 1 and gpu["num_replicas"] == 2
    auto = deployment_options(ServeSettings("x", min_replicas=1, max_replicas=3, max_queue=5))
    assert auto["autoscaling_config"]["max_replicas"] == 3 and "num_replicas" not in auto
    assert auto["max_queued_requests"] == 2 * 8 * 3 + 5
    # a replica takes more than its model holds: past that it answers 503 itself
    assert replica_capacity(ServeSettings("x", max_queue=5)) == 2 * 8 + 5
    assert auto["max_ongoing_requests"] == 2 * 8 + 5 + API_SLACK
    with pytest.raises(ValueError, match="unknown serving settings"):
        ServeSettings.from_dict({"export_dir": "x", "replica": 2})


@pytest.mark.slow
def test_replicas_run_onnxruntime_without_busy_waiting(tmp_path):
    """The server's predictor (make_predictor) lets ORT's threads sleep unless --ort_spinning;
    the masks are the same either way."""
    from deploy.python.predictor import load_deploy_config
    from deploy.serving.app import make_predictor
    from deploy.serving.server import parse_args, settings_from_args

    export = make_export(tmp_path / "export")
    deploy = load_deploy_config(export)
    key = "session.intra_op.allow_spinning"
    masks = []
    for flags in ([], ["--ort_spinning"]):
        argv = ["--export_dir", str(export), "--backend", "onnxruntime", *flags]
        settings = settings_from_args(parse_args(argv))
        predictor, backend = make_predictor(settings, deploy)
        options = predictor._session.get_session_options()
        assert backend == "onnxruntime" and settings.ort_spinning == bool(flags)
        if flags:  # ORT's default: the entry is not set at all
            with pytest.raises(RuntimeError, match="does not have configuration"):
                options.get_session_config_entry(key)
        else:
            assert options.get_session_config_entry(key) == "0"
        masks.append(predictor.predict([cv2.imdecode(np.frombuffer(png(), np.uint8), 1)])[0])
    assert (masks[0] == masks[1]).all()


# -------------------------------------------------------------------------------- API


@pytest.mark.slow
def test_predict_png_json_overlay(serving_server):
    status, headers, body = post(serving_server, "/predict", png(48, 80))
    assert status == 200 and headers["content-type"] == "image/png", body[:200]
    mask = Image.open(io.BytesIO(body))
    assert mask.mode == "P" and mask.size == (80, 48) and np.asarray(mask).max() < 19
    assert mask.getpalette()[3:6] == [244, 35, 232]  # deploy.yaml's (Cityscapes') palette
    status, _, body = post(serving_server, "/predict?format=json", png(48, 80))
    doc = json.loads(body)
    assert status == 200 and (doc["height"], doc["width"]) == (48, 80)
    # the histogram is labelled with deploy.yaml's class names
    assert doc["classes"] and all(c["name"] == CITYSCAPES[c["id"]] for c in doc["classes"])
    assert sum(c["pixels"] for c in doc["classes"]) == 48 * 80 and doc["latency_ms"] > 0
    assert abs(sum(c["share"] for c in doc["classes"]) - 1) < 1e-4
    status, headers, body = post(serving_server, "/predict?format=overlay", png(48, 80))
    assert status == 200 and headers["content-type"] == "image/jpeg"
    assert cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_COLOR).shape == (48, 80, 3)
    assert post(serving_server, "/predict?format=gif", png())[0] == 422
    assert post(serving_server, "/nowhere", png())[0] == 404


@pytest.mark.slow
def test_answers_say_where_the_time_went(serving_server):
    """Server-Timing: every stage of the one replica (API and model in one process: no hop
    stage); the session's --batch_wait_ms 20 holds a lone request's batch that long."""
    tic = time.perf_counter()
    status, headers, _ = post(serving_server, "/predict", png(48, 80))
    client_ms = (time.perf_counter() - tic) * 1000
    assert status == 200
    stages = parse_server_timing(headers["server-timing"])
    assert list(stages) == ["read", "decode", "wait", "model", "encode", "app"], stages
    assert all(ms >= 0 for ms in stages.values()), stages
    assert stages["wait"] >= 19.0, stages
    parts = sum(ms for name, ms in stages.items() if name != "app")
    assert parts <= stages["app"] + 0.1 and stages["app"] <= client_ms, (stages, client_ms)


@pytest.mark.slow
def test_paddlex_semantic_segmentation_api(serving_server):
    image = base64.b64encode(png(32, 48)).decode()
    status, _, body = post(
        serving_server,
        "/semantic-segmentation",
        json.dumps({"image": image, "visualize": True}).encode(),
    )
    doc = json.loads(body)
    assert status == 200 and doc["errorCode"] == 0 and doc["errorMsg"] == "Success", doc
    assert doc["logId"] and doc["result"]["size"] == [32, 48]
    assert len(doc["result"]["labelMap"]) == 32 * 48 and max(doc["result"]["labelMap"]) < 19
    assert set(doc) == {"logId", "errorCode", "errorMsg", "result"}  # PaddleX's, unchanged:
    assert set(doc["result"]) == {"labelMap", "size", "image"}  # no class names added
    assert base64.b64decode(doc["result"]["image"])[:2] == b"\xff\xd8"  # JPEG overlay
    cases = [
        ({"image": "https://example.com/a.png"}, 422, "not fetched"),
        ({"image": "%%%"}, 400, "base64"),
        ({}, 422, "required"),
        ({"image": image, "targetSize": [64, 64]}, 422, "targetSize"),
    ]
    for payload, code, words in cases:
        status, _, body = post(
            serving_server, "/semantic-segmentation", json.dumps(payload).encode()
        )
        doc = json.loads(body)
        assert status == code and doc["errorCode"] == code and words in doc["errorMsg"], doc


@pytest.mark.slow
def test_health_classes_metrics_index(serving_server):
    status, _, body = request(serving_server.url, "GET", "/health")
    health = json.loads(body)
    assert status == 200 and health["status"] == "ok"
    # --backend auto (the default) measured the fp32 backends in the replica and logged it
    assert health["backend"] in ("paddle", "onnxruntime", "openvino")
    assert f"auto backend: {health['backend']} (fp32, measured: paddle" in serving_server.log_tail(
        10**6
    )
    classes = json.loads(request(serving_server.url, "GET", "/classes")[2])
    assert classes["num_classes"] == 19 and classes["palette"][1] == [244, 35, 232]
    assert classes["names"] == list(CITYSCAPES)  # from deploy.yaml (the config's dataset)
    assert classes["classes"][13] == {"id": 13, "name": "car", "color": [0, 0, 142]}
    status, headers, body = request(serving_server.url, "GET", "/")
    assert status == 200 and headers["content-type"].startswith("text/html")
    assert b"<html" in body.lower()
    post(serving_server, "/predict", b"not an image")
    status, headers, body = request(serving_server.url, "GET", "/metrics")
    text = body.decode()
    assert status == 200 and headers["content-type"].startswith("text/plain")
    assert metric(text, 'seg_requests_total{path="/predict",status="400"}') >= 1
    for name in ("seg_request_latency_seconds_bucket", "seg_batch_size_bucket", "seg_queue_depth"):
        assert name in text


@pytest.mark.slow
def test_concurrent_requests_are_batched_by_shape(serving_server):
    """Concurrent requests of two sizes: every answer has its own size, batches hold > 1."""
    before = request(serving_server.url, "GET", "/metrics")[2].decode()
    shapes = [(64, 64), (48, 80)] * 4
    with ThreadPoolExecutor(len(shapes)) as pool:
        results = list(
            pool.map(
                lambda s: post(
                    serving_server, "/predict?format=json", png(*s), X_Debug_Delay_Ms="300"
                ),
                shapes,
            )
        )
    for (h, w), (status, _, body) in zip(shapes, results):
        assert status == 200, body
        assert (json.loads(body)["height"], json.loads(body)["width"]) == (h, w)
    after = request(serving_server.url, "GET", "/metrics")[2].decode()
    count = metric(after, "seg_batch_size_count") - metric(before, "seg_batch_size_count")
    total = metric(after, "seg_batch_size_sum") - metric(before, "seg_batch_size_sum")
    assert count == len(shapes) and total > count  # some requests shared a batch


# ----------------------------------------------------------------------------- limits


@pytest.mark.slow
def test_body_limits_before_and_while_reading(serving_server):
    # Content-Length over the limit: 413 without the client sending one byte of the body.
    tic = time.monotonic()
    head = (
        f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {MAX_BYTES + 1}\r\n\r\n"
    ).encode()
    status, raw = raw_exchange(serving_server, head)
    assert status == 413 and time.monotonic() - tic < 1.0, raw[:300]
    # Chunked body without Content-Length: refused once it grows past the limit.
    chunk = b"x" * 65536
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(chunk), chunk) for _ in range(MAX_BYTES // 65536 + 2))
    status, raw = raw_exchange(
        serving_server,
        b"POST /predict HTTP/1.1\r\nHost: x\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n",
    )
    assert status == 413 and b"--max_bytes" in raw, raw[:300]
    # A whole body just over the limit gets the 413 too (the server may answer and close
    # before the client has sent it all: an ordinary client's send can then break its pipe).
    body = b"x" * (MAX_BYTES + 10)
    head = f"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n\r\n".encode()
    status, raw = raw_exchange(serving_server, head + body)
    assert status == 413, raw[:300]
    assert post(serving_server, "/predict", b"")[0] == 400


@pytest.mark.slow
def test_malformed_requests_get_400(serving_server):
    for bad_length in (b"abc", b"-5", b"1e3"):
        status, raw = raw_exchange(
            serving_server,
            b"POST /predict HTTP/1.1\r\nHost: x\r\n"
            b"Content-Length: " + bad_length + b"\r\n\r\nhello",
        )
        assert status == 400, raw[:300]
    status, raw = raw_exchange(serving_server, b"GARBAGE\r\n\r\n")
    assert status == 400, raw[:300]
    status, _, body = post(serving_server, "/predict", b"\x89PNG\r\n\x1a\nnot really")
    assert status == 400 and b"decodable" in body
    status, _, body = post(serving_server, "/predict", png()[:100])  # valid header, cut data
    assert status == 400 and b"decodable" in body


@pytest.mark.slow
def test_pixel_bomb_is_refused_from_its_header(serving_server):
    """A ~420 KB PNG claiming 12000x12000 (432 MB decoded): 413 within 1 s, no memory spent."""
    bomb = huge_png(12000, 12000)
    assert len(bomb) < MAX_BYTES
    pid = json.loads(request(serving_server.url, "GET", "/health")[2])["ingress_pid"]
    before = peak_rss_mb(pid)
    tic = time.monotonic()
    status, _, body = post(serving_server, "/predict", bomb)
    assert status == 413 and time.monotonic() - tic < 1.0, body
    assert b"12000x12000" in body
    assert peak_rss_mb(pid) - before < 100


@pytest.mark.slow
def test_a_thousand_bad_requests_then_a_good_one(serving_server):
    bodies = [b"", b"junk" * 10, b"\xff\xd8\xff\xda\x00\x02", b"\x89PNG\r\n\x1a\n" + b"\0" * 20]
    deadline = time.monotonic() + 120

    def send(i: int) -> int:
        if time.monotonic() > deadline:
            return -1
        return post(serving_server, "/predict", bodies[i % len(bodies)])[0]

    with ThreadPoolExecutor(8) as pool:
        statuses = list(pool.map(send, range(1000)))
    assert set(statuses) == {400}, {s: statuses.count(s) for s in set(statuses)}
    status, _, _ = post(serving_server, "/predict", png())
    assert status == 200


@pytest.mark.slow
def test_full_queue_answers_503_with_retry_after(serving_server):
    # 4 per batch, 2 batches per replica, 4 queued: 24 concurrent slow requests overflow.
    with ThreadPoolExecutor(24) as pool:
        results = list(
            pool.map(
                lambda i: post(serving_server, "/predict", png(), X_Debug_Delay_Ms="400"), range(24)
            )
        )
    statuses = [r[0] for r in results]
    assert set(statuses) <= {200, 503}, statuses
    assert statuses.count(200) >= 4 and statuses.count(503) >= 1, statuses
    assert all(r[1].get("retry-after") == "1" for r in results if r[0] == 503)
    assert post(serving_server, "/predict", png())[0] == 200  # and it recovers


@pytest.mark.slow
def test_deadline_answers_504(serving_server):
    tic = time.monotonic()
    status, _, body = post(serving_server, "/predict", png(), X_Debug_Delay_Ms="5500")
    elapsed = time.monotonic() - tic
    assert status == 504 and b"request_timeout_s" in body, body
    assert TIMEOUT_S - 0.5 < elapsed < TIMEOUT_S + 3
    # The slow batch still holds the model for ~0.5 s; the next request waits, then succeeds.
    assert post(serving_server, "/predict", png())[0] == 200


# --------------------------------------------------------------------------- shutdown


@pytest.mark.slow
def test_graceful_shutdown_finishes_requests_in_flight(tmp_path):
    """A second server (Paddle Inference backend): SIGTERM while a slow request runs."""
    export = make_export(tmp_path / "export", fmt="paddle")
    server = start_server(
        export,
        tmp_path / "server.log",
        "--cpu_threads",
        "1",
        "--debug_delay_ms",
        "5000",
        "--request_timeout_s",
        "20",
    )
    try:
        health = json.loads(request(server.url, "GET", "/health")[2])
        assert health["backend"] == "paddle"
        result: Dict[str, object] = {}

        def slow_request() -> None:
            try:
                result["r"] = post(server, "/predict", png(), X_Debug_Delay_Ms="3000")
            except OSError as err:  # reported by the assertion below
                result["r"] = (repr(err),)

        slow = threading.Thread(target=slow_request)
        slow.start()
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # wait until the request is at the model
            health = json.loads(request(server.url, "GET", "/health")[2])
            if health["queue_depth"] >= 1:
                break
            time.sleep(0.05)
        assert health["queue_depth"] >= 1
        server.proc.send_signal(signal.SIGTERM)
        slow.join(30)
        assert not slow.is_alive() and result["r"][0] == 200, result
        assert server.proc.wait(60) == 0, server.log_tail()
        assert "stopped" in server.log_tail()
    finally:
        server.stop()


def test_serve_config_is_a_valid_ray_serve_config():
    import yaml
    from ray.serve.schema import ServeDeploySchema

    from deploy.serving.app import build_app

    config = yaml.safe_load((ROOT / "deploy" / "serving" / "serve_config.yaml").read_text())
    ServeDeploySchema.model_validate(config)
    (application,) = config["applications"]
    assert application["import_path"] == "deploy.serving.app:build_app"
    build_app(application["args"])  # every arg is a known setting
