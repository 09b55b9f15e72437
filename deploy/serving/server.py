"""Serve an export over HTTP with Ray Serve (FastAPI ingress, dynamic batching, hard limits).

    python deploy/serving/server.py --export_dir output/inference_model \
        [--backend auto|paddle|onnxruntime|openvino] [--precision fp32|bf16|int8|fp16] \
        [--device gpu --use_trt --precision fp16] \
        [--replicas N | --min_replicas 1 --max_replicas 4] [--max_batch_size 8 --batch_wait_ms 0] \
        [--address auto] [--host 127.0.0.1 --port 8000]

Starts a local Ray (or joins a running cluster with ``--address auto``), runs the application
of ``deploy/serving/app.py`` (one deployment: API and model in each replica) and serves until
SIGINT/SIGTERM; then it stops taking requests,
lets the ones in flight finish and exits. On a cluster ``serve run
deploy/serving/serve_config.yaml`` does the same. Endpoints (docs/serving.md):

    POST /predict[?format=png|json|overlay]   image bytes -> PNG mask / JSON summary / JPEG
    POST /semantic-segmentation               PaddleX's JSON API ({"image": base64})
    GET  /health  /metrics  /classes  /  /static/*
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path
from typing import List, Optional

try:
    from deploy.python.predictor import (
        Predictor,  # noqa: F401  the one packaged predictor
        load_deploy_config,
    )
    from deploy.serving.app import BACKENDS, ServeSettings, choose_backend
    from deploy.serving.codec import read_class_names
except ModuleNotFoundError as _err:  # run as a file without `pip install -e ".[serve]"`
    raise SystemExit(f'server.py: error: {_err}; run `pip install -e ".[serve]"`') from None

APP_NAME = "segmentation"


def parse_args(argv: Optional[List[str]] = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--export_dir", required=True)
    p.add_argument(
        "--backend",
        default="auto",
        choices=BACKENDS,
        help="auto: the fastest installed backend for --precision (fp32 unless asked), "
        "measured once per export and machine; openvino/onnxruntime run model.onnx on CPU "
        "(int8: the model deploy/python/quantize.py wrote)",
    )
    p.add_argument("--device", default="cpu", choices=["cpu", "gpu"])
    p.add_argument("--use_trt", action="store_true", help="TensorRT (GPU, Paddle backend)")
    p.add_argument("--precision", default="fp32", choices=["fp32", "fp16", "int8", "bf16"])
    p.add_argument(
        "--cpu_threads",
        type=int,
        default=2,
        help="threads per CPU replica; also the CPUs Ray reserves for it",
    )
    p.add_argument(
        "--ort_spinning",
        action="store_true",
        help="ONNX Runtime threads busy-wait between parallel sections (its default; off here: "
        "they would take the cores the HTTP side needs)",
    )
    p.add_argument("--replicas", type=int, default=1, help="model replicas (fixed)")
    p.add_argument("--min_replicas", type=int, help="autoscaling lower bound")
    p.add_argument("--max_replicas", type=int, help="autoscaling upper bound")
    p.add_argument("--max_batch_size", type=int, default=8)
    p.add_argument(
        "--batch_wait_ms",
        type=float,
        default=0.0,
        help="how long a batch that is not full waits for more requests (0: a request runs "
        "as soon as the model is free, with whatever queued meanwhile)",
    )
    p.add_argument(
        "--max_queue",
        type=int,
        default=16,
        help="requests waiting for a busy model; more get 503 + Retry-After",
    )
    p.add_argument("--max_bytes", type=int, default=16 << 20, help="largest body (413)")
    p.add_argument(
        "--max_pixels",
        type=int,
        default=4096 * 4096,
        help="largest decoded image, read from its header (413)",
    )
    p.add_argument("--request_timeout_s", type=float, default=30.0, help="deadline (504)")
    p.add_argument("--class_names", help="a file (one name a line) or a comma-separated list")
    p.add_argument("--address", help="Ray cluster to join (e.g. auto); default: a local Ray")
    p.add_argument("--num_cpus", type=int, help="CPUs of the local Ray (default: all)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000)
    p.add_argument("--debug_delay_ms", type=float, default=0.0, help=argparse.SUPPRESS)
    return p.parse_args(argv)


def settings_from_args(args: argparse.Namespace) -> ServeSettings:
    keys = ("export_dir", "backend", "device", "use_trt", "precision", "cpu_threads",
            "ort_spinning", "replicas",
            "min_replicas", "max_replicas", "max_batch_size", "batch_wait_ms", "max_queue",
            "max_bytes", "max_pixels", "request_timeout_s", "debug_delay_ms")  # fmt: skip
    values = {k: getattr(args, k) for k in keys}
    return ServeSettings(**values, class_names=read_class_names(args.class_names))


def start(args: argparse.Namespace) -> None:
    """Ray (local or joined), Serve's HTTP proxy on host:port, then the application."""
    import ray
    from ray import serve

    from deploy.serving.app import build_app

    settings = settings_from_args(args)
    # A backend/precision/device the table cannot run fails here, in one line, before Ray.
    choose_backend(settings, load_deploy_config(Path(settings.export_dir)))
    if args.address:
        ray.init(address=args.address, logging_level="WARNING")
    else:  # never attach to some other cluster on this machine by accident
        ray.init(address="local", num_cpus=args.num_cpus, include_dashboard=False,
                 logging_level="WARNING")  # fmt: skip
    http = {"host": args.host, "port": args.port,
            "request_timeout_s": settings.request_timeout_s + 5}  # fmt: skip
    serve.start(http_options=http)
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/")


def stop(embedded: bool) -> None:
    """Delete the application gracefully (requests in flight finish), then stop Serve/Ray."""
    import ray
    from ray import serve

    serve.delete(APP_NAME)
    if embedded:
        serve.shutdown()
        ray.shutdown()


def main(argv: Optional[List[str]] = None) -> None:
    args = parse_args(argv)
    stopping = threading.Event()

    def on_signal(signum, frame) -> None:
        stopping.set()

    try:
        start(args)
    except (ValueError, FileNotFoundError) as err:
        raise SystemExit(f"server.py: error: {err}") from None
    # After ray.init: Ray's driver installs its own SIGTERM handler, which would just exit.
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    print(f"serving {args.export_dir} on http://{args.host}:{args.port}", flush=True)
    while not stopping.wait(0.5):
        pass
    print("stopping: finishing requests in flight", flush=True)
    stop(embedded=not args.address)
    print("stopped", flush=True)
    sys.exit(0)


if __name__ == "__main__":
    main()
