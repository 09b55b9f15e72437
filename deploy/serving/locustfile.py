"""Locust user for the serving load benchmark: POST one fixed image to /predict, back to back.

Run by ``tools/benchmark_serving.py`` in its own process (locust's gevent monkey-patching
must come before any other import, so it never runs inside a process that loaded Ray or
Paddle)::

    BENCH_IMAGE=deploy/serving/static/samples/street_1.jpg BENCH_RESULT=c4.json \
        locust -f deploy/serving/locustfile.py --headless -u 4 -r 4 -t 30s \
        --host http://127.0.0.1:8000 --only-summary

Environment:
    BENCH_IMAGE    (required) the image file posted as the body
    BENCH_PATH     request path, default ``/predict`` (e.g. ``/predict?format=json``)
    BENCH_TIMEOUT  seconds before a request counts as failed, default 120
    BENCH_RESULT   write every finished request there as JSON when locust quits:
                   ``{"requests": [[start_s, latency_ms, status], ...], "warmup_s", ...}``
                   (start in seconds since the test start; status 0: no HTTP answer --
                   refused, reset or timed out). Locust's own CSV is rewritten once a second
                   and misses the last second; this file is exact.
    BENCH_WARMUP_S passed through into the result: ``benchmark.summarize_level`` leaves the
                   first seconds out of throughput and latency (default 0).

Every non-200 answer is also a locust failure named ``HTTP <status>``.
"""

from __future__ import annotations

import json
import os
import time

from locust import FastHttpUser, constant, events, task

IMAGE_PATH = os.environ.get("BENCH_IMAGE", "")
REQUEST_PATH = os.environ.get("BENCH_PATH", "/predict")
TIMEOUT = float(os.environ.get("BENCH_TIMEOUT", "120"))
RESULT_PATH = os.environ.get("BENCH_RESULT", "")
WARMUP_S = float(os.environ.get("BENCH_WARMUP_S", "0"))


def _load_body() -> bytes:
    if not IMAGE_PATH:
        raise SystemExit("locustfile.py: set BENCH_IMAGE to the image file to post")
    with open(IMAGE_PATH, "rb") as f:
        return f.read()


BODY = _load_body()
# (start time in s since the test start, latency ms, HTTP status) per finished request
RECORDS: list = []
_T0 = [time.time()]


@events.test_start.add_listener
def _on_test_start(**_kw) -> None:
    _T0[0] = time.time()


@events.quitting.add_listener
def _on_quitting(**_kw) -> None:
    if not RESULT_PATH:
        return
    out = {
        "path": REQUEST_PATH,
        "image_bytes": len(BODY),
        "warmup_s": WARMUP_S,
        "requests": RECORDS,
    }
    with open(RESULT_PATH, "w") as f:
        json.dump(out, f)


class PredictUser(FastHttpUser):
    """A closed-loop client: the next request leaves as soon as the previous answer arrives."""

    wait_time = constant(0)
    network_timeout = TIMEOUT
    connection_timeout = TIMEOUT

    @task
    def predict(self) -> None:
        start = time.time()
        with self.client.post(
            REQUEST_PATH,
            data=BODY,
            headers={"Content-Type": "application/octet-stream"},
            name="POST /predict",
            catch_response=True,
        ) as resp:
            latency_ms = (time.time() - start) * 1000.0
            status = int(resp.status_code or 0)
            if status == 200:
                resp.success()
            else:
                resp.failure(f"HTTP {status}")
        RECORDS.append((round(start - _T0[0], 6), round(latency_ms, 3), status))
