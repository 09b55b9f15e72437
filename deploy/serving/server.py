"""HTTP serving over a pool of Paddle Inference predictors (GPU when asked, CPU otherwise).

    python deploy/serving/server.py --export_dir output/export --port 8866 \
        [--device gpu --use_trt --precision fp16] [--workers 2 --max_queue 8]

Endpoints:
    POST /predict          image bytes in the body -> PNG class-id mask (palette)
    POST /predict?format=json                   -> {"width", "height", "histogram"}
    GET  /health                                -> {"status": "ok", ...}

Limits: bodies over --max_bytes get 413 without being read; when every predictor is busy
and --max_queue requests already wait, new requests get 503 at once; an undecodable image
gets 400. SIGINT/SIGTERM stop accepting, finish the requests in flight, then exit.
"""

from __future__ import annotations

import argparse
import io
import json
import queue
import signal
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import List, Optional
from urllib.parse import parse_qs, urlparse

import cv2
import numpy as np

try:
    from deploy.python.predictor import Predictor, RuntimeOptions
except ModuleNotFoundError as _err:  # run as a file without `pip install -e .`
    raise SystemExit(f"server.py: error: {_err}; run `pip install -e .`") from None


class PredictorPool:
    """``workers`` predictors; at most ``max_queue`` requests wait for one."""

    def __init__(self, export_dir: str, options: RuntimeOptions, workers: int, max_queue: int):
        self._free: queue.Queue[Predictor] = queue.Queue()
        for _ in range(workers):
            self._free.put(Predictor(export_dir, options))
        self.workers = workers
        self._admission = threading.BoundedSemaphore(workers + max_queue)
        self.deploy = self._free.queue[0].deploy
        self._lock = threading.Lock()
        self.in_flight = 0

    def try_admit(self) -> bool:
        """Reserve a slot (running or queued) without waiting; False means 'busy'."""
        if not self._admission.acquire(blocking=False):
            return False
        with self._lock:
            self.in_flight += 1
        return True

    def release(self) -> None:
        with self._lock:
            self.in_flight -= 1
        self._admission.release()

    def predict(self, image: np.ndarray, timeout: float) -> np.ndarray:
        predictor = self._free.get(timeout=timeout)
        try:
            return predictor.predict([image])[0]
        finally:
            self._free.put(predictor)


def encode_png(mask: np.ndarray, palette: Optional[List[List[int]]]) -> bytes:
    from PIL import Image

    pil = Image.fromarray(mask.astype(np.uint8), mode="P")
    full = np.zeros((256, 3), np.uint8)
    if palette:
        full[: len(palette)] = np.asarray(palette, np.uint8)
    pil.putpalette(full.reshape(-1).tolist())
    buf = io.BytesIO()
    pil.save(buf, format="PNG")
    return buf.getvalue()


def make_handler(pool: PredictorPool, max_bytes: int, wait_timeout: float):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        timeout = 30  # a stalled client cannot hold a thread forever

        def log_message(self, fmt, *args):  # quiet by default; errors are in the responses
            pass

        def _send(self, status: int, body: bytes, ctype: str = "application/json") -> None:
            self.send_response(status)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _error(self, status: int, message: str) -> None:
            self.close_connection = True
            self._send(status, json.dumps({"error": message}).encode())

        def do_GET(self) -> None:  # noqa: N802
            if urlparse(self.path).path != "/health":
                return self._error(HTTPStatus.NOT_FOUND, "unknown path; use /health or /predict")
            body = {"status": "ok", "workers": pool.workers, "in_flight": pool.in_flight}
            self._send(HTTPStatus.OK, json.dumps(body).encode())

        def do_POST(self) -> None:  # noqa: N802
            url = urlparse(self.path)
            if url.path != "/predict":
                return self._error(HTTPStatus.NOT_FOUND, "unknown path; POST /predict")
            length = int(self.headers.get("Content-Length") or 0)
            if length <= 0:
                return self._error(HTTPStatus.LENGTH_REQUIRED, "send the image as the body")
            if length > max_bytes:
                return self._error(
                    HTTPStatus.REQUEST_ENTITY_TOO_LARGE, f"body over {max_bytes} bytes"
                )
            data = self.rfile.read(length)
            if not pool.try_admit():
                return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "busy: queue full, retry")
            try:
                self._predict(data, parse_qs(url.query).get("format", ["png"])[0])
            finally:
                pool.release()

        def _predict(self, data: bytes, fmt: str) -> None:
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
            if image is None:
                return self._error(HTTPStatus.BAD_REQUEST, "the body is not a decodable image")
            try:
                mask = pool.predict(image, wait_timeout)
            except queue.Empty:
                return self._error(HTTPStatus.SERVICE_UNAVAILABLE, "timed out waiting")
            except ValueError as err:  # e.g. larger than the export's Padding size
                return self._error(HTTPStatus.UNPROCESSABLE_ENTITY, str(err))
            if fmt == "json":
                hist = np.bincount(mask.reshape(-1), minlength=pool.deploy.get("num_classes", 0))
                body = {"width": int(mask.shape[1]), "height": int(mask.shape[0]),
                        "histogram": {str(k): int(v) for k, v in enumerate(hist) if v}}  # fmt: skip
                return self._send(HTTPStatus.OK, json.dumps(body).encode())
            self._send(HTTPStatus.OK, encode_png(mask, pool.deploy.get("palette")), "image/png")

    return Handler


def build_server(
    export_dir: str,
    host: str = "127.0.0.1",
    port: int = 8866,
    options: Optional[RuntimeOptions] = None,
    workers: int = 1,
    max_queue: int = 4,
    max_bytes: int = 16 << 20,
    wait_timeout: float = 30.0,
) -> ThreadingHTTPServer:
    """An HTTP server (not yet serving) over a predictor pool."""
    pool = PredictorPool(export_dir, options or RuntimeOptions(), workers, max_queue)
    server = ThreadingHTTPServer((host, port), make_handler(pool, max_bytes, wait_timeout))
    server.daemon_threads = False  # shutdown waits for requests in flight
    server.block_on_close = True
    server.pool = pool  # type: ignore[attr-defined]
    return server


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--export_dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8866)
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--use_trt", action="store_true")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "bf16"])
    p.add_argument("--cpu_threads", type=int, default=2)
    p.add_argument("--workers", type=int, default=1, help="predictors in the pool")
    p.add_argument("--max_queue", type=int, default=4, help="requests allowed to wait")
    p.add_argument("--max_bytes", type=int, default=16 << 20)
    args = p.parse_args(argv)
    options = RuntimeOptions(device=args.device, use_trt=args.use_trt,
                             precision=args.precision, cpu_threads=args.cpu_threads)  # fmt: skip
    server = build_server(args.export_dir, args.host, args.port, options, args.workers,
                          args.max_queue, args.max_bytes)  # fmt: skip

    def stop(signum, frame):
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    print(f"serving {args.export_dir} on http://{args.host}:{server.server_address[1]}", flush=True)
    server.serve_forever()
    server.server_close()
    print("stopped", flush=True)


if __name__ == "__main__":
    main()
