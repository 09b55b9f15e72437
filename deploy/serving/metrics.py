"""Prometheus metrics of one ingress replica (its own registry, served at ``GET /metrics``).

A module of its own so that every user in a replica process -- the FastAPI middleware and the
Ray Serve deployment class, which Ray pickles by value -- reaches the same objects.
"""

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["REGISTRY", "REQUESTS", "LATENCY", "BATCH", "QUEUE", "render", "CONTENT_TYPE_LATEST"]

REGISTRY = CollectorRegistry()
REQUESTS = Counter("seg_requests_total", "HTTP requests by path and status code",
                   ["path", "status"], registry=REGISTRY)  # fmt: skip
LATENCY = Histogram("seg_request_latency_seconds", "Request latency (seconds) by path", ["path"],
                    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
                    registry=REGISTRY)  # fmt: skip
BATCH = Histogram("seg_batch_size", "Requests per model batch, as each request saw it",
                  buckets=(1, 2, 4, 8, 16, 32, 64), registry=REGISTRY)  # fmt: skip
QUEUE = Gauge("seg_queue_depth", "Requests sent to the model and not yet answered",
              registry=REGISTRY)  # fmt: skip


def render() -> bytes:
    """The registry in Prometheus' text format."""
    return generate_latest(REGISTRY)


def queue_depth() -> float:
    return QUEUE._value.get()
