"""Load a running server with concurrent clients; report throughput and p50/p99 latency.

    python deploy/serving/load_test.py --url http://127.0.0.1:8000 --image img.png \
        --concurrency 4 --requests 100

Only loopback or your own hosts: the request count and a per-request timeout bound the run.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from typing import Dict, List


def _one(url: str, body: bytes, timeout: float) -> int:
    req = urllib.request.Request(url, data=body, method="POST",
                                 headers={"Content-Type": "application/octet-stream"})  # fmt: skip
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            resp.read()
            return resp.status
    except urllib.error.HTTPError as err:
        return err.code
    except (urllib.error.URLError, TimeoutError, ConnectionError):
        return -1


def run_load(url: str, body: bytes, concurrency: int, requests: int, timeout: float = 30.0) -> Dict:
    """Send ``requests`` POSTs from ``concurrency`` threads; latency stats over 200 responses."""
    latencies: List[float] = []
    statuses: Counter = Counter()
    lock = threading.Lock()
    remaining = [requests]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] <= 0:
                    return
                remaining[0] -= 1
            tic = time.perf_counter()
            status = _one(url, body, timeout)
            elapsed = time.perf_counter() - tic
            with lock:
                statuses[status] += 1
                if status == 200:
                    latencies.append(elapsed)

    start = time.perf_counter()
    threads = [threading.Thread(target=worker) for _ in range(concurrency)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    ordered = sorted(latencies)

    def pct(q: float) -> float:
        return (
            round(ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000, 1)
            if ordered
            else 0.0
        )

    return {
        "concurrency": concurrency,
        "requests": requests,
        "ok": len(latencies),
        "status_counts": {str(k): v for k, v in sorted(statuses.items())},
        "throughput_rps": round(len(latencies) / wall, 2) if wall else 0.0,
        "p50_ms": pct(0.50),
        "p99_ms": pct(0.99),
        "wall_s": round(wall, 2),
    }


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000")
    p.add_argument("--image", required=True)
    p.add_argument("--concurrency", type=int, default=4)
    p.add_argument("--requests", type=int, default=50)
    p.add_argument("--timeout", type=float, default=30.0)
    args = p.parse_args(argv)
    with open(args.image, "rb") as fh:
        body = fh.read()
    report = run_load(args.url.rstrip("/") + "/predict", body, args.concurrency, args.requests,
                      args.timeout)  # fmt: skip
    print(json.dumps(report))


if __name__ == "__main__":
    main()
