"""The Ray Serve application: one deployment that is both the FastAPI API and the model.

``build_app(settings)`` returns the application; ``deploy/serving/server.py`` runs it on a local
Ray (or joins a cluster), ``serve run deploy/serving/serve_config.yaml`` runs it on a cluster.

``Segmenter`` (one replica per GPU or per ``cpu_threads`` CPUs, behind Ray's HTTP proxy) reads
bodies within ``max_bytes``, checks the pixel count in the image header before decoding,
decodes, batches concurrent requests (:class:`deploy.serving.batching.Batcher`: a request runs
as soon as the model is free, with whatever queued while it was busy, up to
``max_batch_size``; ``batch_wait_ms`` > 0 holds a batch for more), groups each batch by image
shape, runs one predictor call per group, encodes the answer and keeps the Prometheus
metrics. API and model share the replica, so a request crosses one process boundary (proxy ->
replica), not two, and the decoded image and mask never leave the process. Each replica
holds at most ``2 * max_batch_size + max_queue`` requests at the model (one batch running,
one forming, ``max_queue`` waiting); beyond that it answers 503 + ``Retry-After``.
"""

import asyncio
import base64
import binascii
import json
import os
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, Response
from ray import serve
from starlette.staticfiles import StaticFiles

from deploy.python import backends
from deploy.python.predictor import RuntimeOptions, load_deploy_config
from deploy.schema import class_names_of
from deploy.serving import codec, metrics
from deploy.serving.batching import Batcher
from deploy.serving.codec import RequestError
from deploy.visual import palette_png

STATIC_DIR = Path(__file__).resolve().parent / "static"
BACKENDS = backends.CHOICES
RETRY_AFTER_S = 1
#: requests a replica takes beyond its model's capacity: the API's own (health, metrics,
#: bodies being read or answers being encoded) and the ones it answers 503
API_SLACK = 16
#: zlib level of the PNG masks: fast (a mask is mostly runs, so level 1 is already small)
PNG_LEVEL = 1
#: images up to this many pixels are decoded and their PNG masks encoded on the event loop
#: (about a millisecond each at 512x256); larger ones in a worker thread
INLINE_PIXELS = 1 << 20


@dataclass
class ServeSettings:
    """Everything the deployments need; ``server.py`` flags and ``serve_config.yaml`` args."""

    export_dir: str
    backend: str = "auto"
    device: str = "cpu"
    use_trt: bool = False
    precision: str = "fp32"
    cpu_threads: int = 2
    #: ONNX Runtime's busy-waiting worker threads; off: they would take the cores the replica's
    #: HTTP side (and Ray's proxy) needs between and during model runs
    ort_spinning: bool = False
    replicas: int = 1
    min_replicas: Optional[int] = None
    max_replicas: Optional[int] = None
    max_batch_size: int = 8
    batch_wait_ms: float = 0.0
    max_queue: int = 16
    max_bytes: int = 16 << 20
    max_pixels: int = 4096 * 4096
    request_timeout_s: float = 30.0
    class_names: Optional[List[str]] = None
    #: test-only: requests may ask the model to take this much longer (X-Debug-Delay-Ms)
    debug_delay_ms: float = 0.0

    @classmethod
    def from_dict(cls, args: Dict[str, Any]) -> "ServeSettings":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(args) - known)
        if unknown:
            raise ValueError(f"unknown serving settings {unknown}; known: {sorted(known)}")
        if isinstance(args.get("class_names"), str):
            args = {**args, "class_names": codec.read_class_names(args["class_names"])}
        return cls(**args)


def runtime_options(settings: ServeSettings) -> RuntimeOptions:
    """The predictor's options for the settings (threads, device, precision, TensorRT)."""
    return RuntimeOptions(
        device=settings.device, use_trt=settings.use_trt, precision=settings.precision,
        cpu_threads=settings.cpu_threads, ort_spinning=settings.ort_spinning,
    )  # fmt: skip


def choose_backend(settings: ServeSettings, deploy: Dict[str, Any]) -> str:
    """The backend the settings name, checked against the table (:mod:`deploy.python.backends`)
    without building anything: a combination that cannot run is a one-line BackendError.

    ``auto`` stays ``auto`` here: the replica measures the candidates (fp32 unless another
    precision is asked: INT8 and bf16 change labels, so they are never chosen by default).
    """
    options = runtime_options(settings)
    if settings.backend == "auto":
        if not backends.candidates(deploy, options.device, options.precision):
            raise backends.BackendError(
                f"--backend auto: nothing here runs --precision {options.precision} on "
                f"{options.device} for {settings.export_dir} (this export runs: "
                f"{', '.join(backends.runnable_here(deploy, options.device)) or '-'})"
            )
        return "auto"
    backends.check(settings.backend, options.precision, options.device, deploy,
                   Path(settings.export_dir))  # fmt: skip
    return settings.backend


def make_predictor(settings: ServeSettings, deploy: Dict[str, Any]):
    """(predictor, backend name) for the settings, built by the backend table (``auto``
    measures once per export and machine, see ``backends.choose_auto``, and logs its choice)."""
    choose_backend(settings, deploy)
    predictor = backends.create_predictor(
        settings.export_dir, settings.backend, runtime_options(settings),
        log=lambda message: print(f"Segmenter: {message}", flush=True),
    )  # fmt: skip
    return predictor, predictor.backend


# ------------------------------------------------------------------------------- the API

ROUTES = ("/predict", "/semantic-segmentation", "/health", "/metrics", "/classes", "/")


class CountRequests:
    """Prometheus count and latency per route and status: a plain ASGI middleware (Starlette's
    ``@app.middleware("http")`` runs every request through an extra task and stream)."""

    def __init__(self, inner) -> None:
        self.inner = inner

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.inner(scope, receive, send)
        path = scope["path"]
        label = path if path in ROUTES else ("/static" if path.startswith("/static/") else "other")
        status = [500]  # unless the app starts a response

        async def send_status(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        tic = time.perf_counter()
        try:
            await self.inner(scope, receive, send_status)
        finally:
            metrics.LATENCY.labels(label).observe(time.perf_counter() - tic)
            metrics.REQUESTS.labels(label, str(status[0])).inc()


app = FastAPI(title="paddle_stdc segmentation", version="1")
app.mount("/static", StaticFiles(directory=STATIC_DIR, check_dir=False), name="static")
app.add_middleware(CountRequests)


def _error(err: RequestError) -> JSONResponse:
    headers = dict(err.headers)
    if err.status in (400, 413):
        headers.setdefault("Connection", "close")  # an unread or broken body stays unread
    return JSONResponse({"error": err.message}, status_code=err.status, headers=headers)


async def read_body(request: Request, max_bytes: int) -> bytes:
    """The body, refusing (413) a Content-Length over ``max_bytes`` before reading a byte,
    and any body that grows past it while being read (chunked uploads)."""
    raw = request.headers.get("content-length")
    if raw is not None:
        if not raw.strip().isdigit():
            raise RequestError(400, f"Content-Length {raw!r} is not a number")
        if int(raw) > max_bytes:
            raise RequestError(413, f"body of {int(raw)} bytes is over {max_bytes} (--max_bytes)")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise RequestError(413, f"body over {max_bytes} bytes (--max_bytes)")
        chunks.append(chunk)
    return b"".join(chunks)


def _delay_s(request: Request) -> float:
    try:
        return max(0.0, float(request.headers.get("x-debug-delay-ms", 0))) / 1000.0
    except ValueError:
        raise RequestError(400, "X-Debug-Delay-Ms is not a number") from None


PLACEHOLDER = """<!doctype html><html><head><meta charset="utf-8"><title>Segmentation</title>
</head><body><h1>paddle_stdc segmentation server</h1><p>POST an image to
<code>/predict</code> (PNG mask; <code>?format=json</code>, <code>?format=overlay</code>).
See <a href="/classes">/classes</a>, <a href="/health">/health</a>,
<a href="/metrics">/metrics</a>.</p></body></html>"""


def _b64(text: str) -> bytes:
    if text.startswith("data:") and "," in text:  # data URL: data:image/png;base64,....
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise RequestError(400, '"image" is not valid base64') from None


def replica_capacity(s: ServeSettings) -> int:
    """Requests one replica holds at its model: two batches (one running, one forming) plus
    ``max_queue`` waiting; it answers 503 beyond it."""
    return 2 * s.max_batch_size + s.max_queue


def model_capacity(s: ServeSettings) -> int:
    """Requests the whole deployment holds at its models (every replica's two batches plus
    ``max_queue``): the bound of Ray's own queue in front of the replicas."""
    replicas = s.max_replicas if s.max_replicas is not None else s.replicas
    return 2 * s.max_batch_size * max(replicas, s.min_replicas or 1) + s.max_queue


@serve.deployment(name="Segmenter", graceful_shutdown_wait_loop_s=0.5)
@serve.ingress(app)
class Segmenter:
    """HTTP API and predictor in one replica; see docs/serving.md and ``server.py``."""

    def __init__(self, settings: ServeSettings) -> None:
        # OpenCV's own cap, behind the header check (read once, at the first decode).
        os.environ["OPENCV_IO_MAX_IMAGE_PIXELS"] = str(settings.max_pixels)
        self.s = settings
        self.deploy = load_deploy_config(Path(settings.export_dir))
        k = int(self.deploy.get("num_classes") or 256)
        self.palette = self.deploy.get("palette") or codec.default_palette(k)
        self.names = class_names_of(self.deploy, settings.class_names)
        self.predictor, self.backend = make_predictor(settings, self.deploy)
        fixed_n = self.deploy["input_shape"][0]
        self._chunk = fixed_n if fixed_n > 0 else settings.max_batch_size
        self._max_delay_s = settings.debug_delay_ms / 1000.0
        self.capacity = replica_capacity(settings)
        self.batcher = Batcher(self._run_batch, settings.max_batch_size,
                               settings.batch_wait_ms / 1000.0)  # fmt: skip

    def _run_batch(self, items: List[Tuple[np.ndarray, float]]) -> List[Dict]:
        """Runs in a worker thread: one predictor call per image size in the batch."""
        if self._max_delay_s > 0:  # test-only: a slow model
            time.sleep(min(max(delay for _, delay in items), self._max_delay_s))
        groups: Dict[Tuple[int, ...], List[int]] = defaultdict(list)
        for i, (image, _) in enumerate(items):
            groups[image.shape].append(i)
        results: List[Dict] = [{}] * len(items)
        for members in groups.values():
            for i, result in zip(members, self._run_group([items[i][0] for i in members])):
                results[i] = {**result, "groups": len(groups)}
        return results

    def _run_group(self, images: List[np.ndarray]) -> List[Dict]:
        """One predictor call for same-size images; its error is each request's answer."""
        try:
            masks = self.predictor.predict(images, batch_size=self._chunk)
        except ValueError as err:  # larger than the export's Padding, fixed input shape
            return [{"status": 422, "error": str(err)}] * len(images)
        return [{"mask": mask} for mask in masks]

    async def _segment(self, data: bytes, delay_s: float, start: float):
        """(image, mask, stage times in ms) for an encoded image, within the request deadline."""
        tic = time.perf_counter()
        if codec.header_pixels(data) <= INLINE_PIXELS:  # ~1 ms: not worth two thread switches
            image = codec.decode_image(data, self.s.max_pixels)
        else:
            image = await asyncio.to_thread(codec.decode_image, data, self.s.max_pixels)
        decoded = time.perf_counter()
        remaining = self.s.request_timeout_s - (decoded - start)
        if self.batcher.pending >= self.capacity:  # every batch slot taken, queue full
            raise RequestError(503, "busy: the model's queue is full; retry",
                               {"Retry-After": str(RETRY_AFTER_S)})  # fmt: skip
        metrics.QUEUE.inc()
        try:
            result = await asyncio.wait_for(
                self.batcher.submit((image, delay_s)), timeout=max(remaining, 0.001)
            )
        except asyncio.TimeoutError:
            raise RequestError(504, f"no answer within {self.s.request_timeout_s} s "
                                    "(--request_timeout_s)") from None  # fmt: skip
        finally:
            metrics.QUEUE.dec()
        if "error" in result:
            raise RequestError(result["status"], result["error"])
        metrics.BATCH.observe(result["batch"])
        stages = {"decode": (decoded - tic) * 1000, "wait": result["wait_ms"],
                  "model": result["model_ms"]}  # fmt: skip
        return image, result["mask"], stages

    @app.post("/predict")
    async def predict(self, request: Request, format: str = "png") -> Response:  # noqa: A002
        start = time.perf_counter()
        try:
            if format not in ("png", "json", "overlay"):
                raise RequestError(422, f"format={format!r}: use png, json or overlay")
            delay = _delay_s(request)
            data = await read_body(request, self.s.max_bytes)
            read = time.perf_counter()
            image, mask, stages = await self._segment(data, delay, start)
        except RequestError as err:
            return _error(err)
        encode = time.perf_counter()
        if format == "json":
            latency = (time.perf_counter() - start) * 1000
            response: Response = JSONResponse(codec.summary(mask, self.names, latency))
        elif format == "overlay":
            body = await asyncio.to_thread(codec.encode_overlay, image, mask, self.palette)
            response = Response(body, media_type="image/jpeg")
        else:
            if mask.size <= INLINE_PIXELS:
                body = palette_png(mask, self.palette, PNG_LEVEL)
            else:
                body = await asyncio.to_thread(palette_png, mask, self.palette, PNG_LEVEL)
            response = Response(body, media_type="image/png")
        done = time.perf_counter()
        stages = {"read": (read - start) * 1000, **stages,
                  "encode": (done - encode) * 1000, "app": (done - start) * 1000}  # fmt: skip
        response.headers["Server-Timing"] = codec.server_timing(stages)
        return response

    @app.post("/semantic-segmentation")
    async def paddlex(self, request: Request) -> JSONResponse:
        """PaddleX's semantic-segmentation serving API (request {"image": base64, ...})."""
        start, log_id = time.perf_counter(), str(uuid.uuid4())
        try:
            payload = await self._paddlex_payload(request)
            data = _b64(payload["image"])
            image, mask, _ = await self._segment(data, _delay_s(request), start)
        except RequestError as err:
            body = {"logId": log_id, "errorCode": err.status, "errorMsg": err.message}
            return JSONResponse(body, status_code=err.status, headers=err.headers)
        result = {"labelMap": mask.reshape(-1).tolist(), "size": [int(mask.shape[0]),
                  int(mask.shape[1])], "image": None}  # fmt: skip
        if payload.get("visualize"):
            jpeg = await asyncio.to_thread(codec.encode_overlay, image, mask, self.palette)
            result["image"] = base64.b64encode(jpeg).decode()
        return JSONResponse({"logId": log_id, "errorCode": 0, "errorMsg": "Success",
                             "result": result})  # fmt: skip

    async def _paddlex_payload(self, request: Request) -> Dict[str, Any]:
        raw = await read_body(request, self.s.max_bytes * 4 // 3 + 1024)  # base64 + JSON
        try:
            payload = json.loads(raw)
        except ValueError as err:
            raise RequestError(400, f"the body is not JSON: {err}") from None
        image = payload.get("image") if isinstance(payload, dict) else None
        if not isinstance(image, str) or not image:
            raise RequestError(422, '"image" (a base64-encoded image file) is required')
        if image.startswith(("http://", "https://", "ftp://", "file:")):
            raise RequestError(422, "image URLs are not fetched (this server makes no outbound "
                                    "requests): send the file's bytes base64-encoded")  # fmt: skip
        if payload.get("targetSize") not in (None, -1):
            raise RequestError(422, "targetSize is not supported: the export's own "
                                    "preprocessing (deploy.yaml) sets the input size")  # fmt: skip
        return payload

    @app.get("/health")
    async def health(self) -> Dict[str, Any]:
        return {
            "status": "ok", "backend": self.backend, "export_dir": self.s.export_dir,
            "num_classes": self.deploy.get("num_classes"), "ingress_pid": os.getpid(),
            "max_batch_size": self.s.max_batch_size, "queue_depth": self.batcher.pending,
        }  # fmt: skip

    @app.get("/metrics")
    async def metrics(self) -> Response:
        return Response(metrics.render(), media_type=metrics.CONTENT_TYPE_LATEST)

    @app.get("/classes")
    async def classes(self) -> Dict[str, Any]:
        """Names (None when unknown) and colours per class id, as lists and per class."""
        k = int(self.deploy.get("num_classes") or len(self.palette))
        names = self.names or []
        per_class = [{"id": i, "name": names[i] if i < len(names) else None,
                      "color": list(self.palette[i]) if i < len(self.palette) else None}
                     for i in range(k)]  # fmt: skip
        return {"num_classes": self.deploy.get("num_classes"), "names": self.names,
                "palette": self.palette, "classes": per_class}  # fmt: skip

    @app.get("/")
    async def index(self) -> Response:
        page = STATIC_DIR / "index.html"
        if page.is_file():
            return FileResponse(page, media_type="text/html")
        return HTMLResponse(PLACEHOLDER)


def deployment_options(s: ServeSettings) -> Dict[str, Any]:
    """Segmenter replicas, resources and queue bounds from the settings.

    A replica takes ``API_SLACK`` more requests than its model holds, so that requests past
    its capacity get the replica's immediate 503 and ``/health``/``/metrics`` still answer."""
    actor: Dict[str, Any] = (
        {"num_gpus": 1, "num_cpus": 1} if s.device == "gpu" else {"num_cpus": s.cpu_threads}
    )
    opts: Dict[str, Any] = {
        "ray_actor_options": actor,
        "max_ongoing_requests": replica_capacity(s) + API_SLACK,
        # Ray's own bound is a backstop: its router counts requests still being assigned.
        "max_queued_requests": model_capacity(s),
        "backpressure_config": {"status_code": 503, "retry_after_s": RETRY_AFTER_S},
        "graceful_shutdown_timeout_s": s.request_timeout_s + 5,
    }
    if s.min_replicas is not None or s.max_replicas is not None:
        low = s.min_replicas if s.min_replicas is not None else 1
        opts["autoscaling_config"] = {"min_replicas": low,
                                      "max_replicas": max(low, s.max_replicas or low),
                                      "target_ongoing_requests": s.max_batch_size}  # fmt: skip
    else:
        opts["num_replicas"] = s.replicas
    return opts


def build_app(args: Any) -> serve.Application:
    """The application for ``ServeSettings`` or a dict of them (``serve run`` config args)."""
    s = args if isinstance(args, ServeSettings) else ServeSettings.from_dict(dict(args))
    return Segmenter.options(**deployment_options(s)).bind(s)


__all__ = ["ServeSettings", "build_app", "choose_backend", "deployment_options", "app"]
