"""The serving web page in headless Chromium (selenium + Debian's chromium-driver), and the
load benchmark's bookkeeping (tools/benchmark_serving.py, deploy/serving/locustfile.py)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from . import test_serving
from .conftest import ROOT

# One worker runs every test of the session's server (this module and test_serving.py share
# it) under pytest-xdist: one server, one local Ray, not one per worker.
pytestmark = pytest.mark.xdist_group("serving")

# The session's server (tests/test_serving.py: server.py on a local Ray, an export of the quick
# start's Cityscapes-layout config with its 19 class names),
# shared with the API tests rather than started a second time.
serving_server = test_serving.serving_server

STATIC = ROOT / "deploy" / "serving" / "static"


def _benchmark_module():
    """tools/benchmark_serving.py (tools are scripts, not a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(
        "benchmark_serving", ROOT / "tools/benchmark_serving.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
INSTALL_HINT = "apt-get update && apt-get install -y chromium chromium-driver"
WAIT_S = 90  # bounded waits: Ray Serve answers in well under this on 2 CPU cores


def _missing(reason: str) -> None:
    """CI must run the browser test: fail there, skip elsewhere, naming the fix either way."""
    if os.environ.get("CI"):
        pytest.fail(reason)
    pytest.skip(reason)


@pytest.fixture(scope="module")
def browser():
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.options import Options
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        _missing('selenium is not installed: pip install -e ".[serve]"')
    chromium = CHROMIUM if os.path.exists(CHROMIUM) else shutil.which("chromium")
    driver_exe = CHROMEDRIVER if os.path.exists(CHROMEDRIVER) else shutil.which("chromedriver")
    if not chromium or not driver_exe:
        _missing(f"Chromium or its driver is missing: {INSTALL_HINT}")
    opts = Options()
    opts.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--window-size=1280,1000", "--no-first-run", "--disable-extensions"):  # fmt: skip
        opts.add_argument(arg)
    driver = webdriver.Chrome(service=Service(executable_path=driver_exe), options=opts)
    driver.set_page_load_timeout(WAIT_S)
    driver.set_script_timeout(WAIT_S)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def serving_url(serving_server) -> str:
    return serving_server.url


# ---- helpers ---------------------------------------------------------------------------------


def _post(url: str, body: bytes):
    req = urllib.request.Request(url, data=body, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=WAIT_S) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _get_json(url: str):
    with urllib.request.urlopen(url, timeout=WAIT_S) as resp:
        return json.loads(resp.read())


def _server_message(body: bytes) -> str:
    data = json.loads(body)
    for key in ("error", "detail", "message"):
        if isinstance(data.get(key), str):
            return data[key]
    raise AssertionError(f"no message in the error body {data}")


def _open_page(driver, base: str):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(base + "/")
    WebDriverWait(driver, WAIT_S).until(EC.presence_of_element_located((By.ID, "file-input")))


def _wait_outcome(driver):
    """Wait (bounded) until the page shows a result or an error; return which."""
    from selenium.webdriver.support.ui import WebDriverWait

    def outcome(d):
        return d.execute_script(
            "const r = document.getElementById('result'), e = document.getElementById('error');"
            "if (!e.hidden) return 'error';"
            "if (!r.hidden && r.dataset.ready === 'true') return 'result';"
            "return false;"
        )

    return WebDriverWait(driver, WAIT_S, poll_frequency=0.2).until(outcome)


def _legend(driver):
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#legend-body tr')).map(tr => ({"
        " id: Number(tr.dataset.classId), pixels: Number(tr.dataset.pixels),"
        " share: Number(tr.dataset.share), shown: tr.querySelector('.share').textContent,"
        " name: tr.querySelector('.class-name').textContent,"
        " color: getComputedStyle(tr.querySelector('.swatch')).backgroundColor}))"
    )


def _overlay_size(driver):
    return driver.execute_script(
        "const o = document.getElementById('overlay');"
        "return [o.complete, o.naturalWidth, o.naturalHeight];"
    )


def _check_result(driver, base: str, body: bytes, size):
    """The page's overlay and legend against the JSON endpoint for the same bytes."""
    done, w, h = _overlay_size(driver)
    assert done and (w, h) == size, (done, w, h, size)
    rows = _legend(driver)
    assert rows, "empty legend"
    # the server rounds each share to 6 decimals
    assert sum(r["share"] for r in rows) == pytest.approx(1.0, abs=1e-6 * len(rows))
    shown = sum(float(r["shown"].rstrip("%")) for r in rows)
    assert shown == pytest.approx(100.0, abs=0.05 * len(rows) + 1e-9)
    status, raw = _post(base + "/predict?format=json", body)
    assert status == 200
    expected = json.loads(raw)
    assert (expected["width"], expected["height"]) == size
    want = {c["id"]: c["pixels"] for c in expected["classes"] if c["pixels"] > 0}
    assert {r["id"]: r["pixels"] for r in rows} == want
    assert sum(want.values()) == size[0] * size[1]
    for r in rows:
        assert r["shown"] == f"{r['pixels'] / (size[0] * size[1]) * 100:.1f}%"
    # rows are sorted by share, colours come from GET /classes
    assert [r["pixels"] for r in rows] == sorted((r["pixels"] for r in rows), reverse=True)
    classes = _get_json(base + "/classes")
    names = classes.get("names")
    for r in rows:
        rgb = classes["palette"][r["id"]]
        assert r["color"] == f"rgb({rgb[0]}, {rgb[1]}, {rgb[2]})", (r, rgb)
        assert r["name"] == (names[r["id"]] if names else f"class {r['id']}")
    return rows


# ---- page tests ------------------------------------------------------------------------------


@pytest.mark.slow
def test_upload_shows_overlay_and_legend(browser, serving_url, tmp_path):
    # a small street-like image with a size no sample has
    sample = cv2.imread(str(STATIC / "samples" / "street_1.jpg"))
    image = cv2.resize(sample, (160, 96), interpolation=cv2.INTER_AREA)
    path = tmp_path / "street small.png"
    cv2.imwrite(str(path), image)
    _open_page(browser, serving_url)
    browser.find_element("id", "file-input").send_keys(str(path))
    outcome = _wait_outcome(browser)
    assert outcome == "result", browser.find_element("id", "error").text
    rows = _check_result(browser, serving_url, path.read_bytes(), (160, 96))
    assert "160 x 96" in browser.find_element("id", "summary").text
    # a Cityscapes-trained export: the legend names classes ("road"), never "class <id>"
    names = [r["name"] for r in rows]
    assert "road" in names and not [n for n in names if n.startswith("class ")], names
    info = browser.find_element("id", "model-info").text
    assert "19 classes." in info and "no class names" not in info, info
    # nothing outside the server: no CDN, fonts or analytics
    urls = browser.execute_script(
        "return performance.getEntriesByType('resource').map(e => e.name).concat([location.href]);"
    )
    outside = [u for u in urls if not u.startswith((serving_url, "blob:", "data:"))]
    assert not outside, outside


@pytest.mark.slow
def test_sample_button_and_drop(browser, serving_url):
    _open_page(browser, serving_url)
    browser.find_element("css selector", "button.sample[data-src$='street_2.jpg']").click()
    assert _wait_outcome(browser) == "result", browser.find_element("id", "error").text
    body = (STATIC / "samples" / "street_2.jpg").read_bytes()
    _check_result(browser, serving_url, body, (512, 256))
    # a file dropped on the drop zone (a synthetic drop event carrying a File)
    browser.execute_async_script(
        "const done = arguments[arguments.length - 1];"
        "fetch('/static/samples/street_1.jpg').then(r => r.blob()).then(b => {"
        " const dt = new DataTransfer();"
        " dt.items.add(new File([b], 'dropped.jpg', {type: 'image/jpeg'}));"
        " document.getElementById('drop-zone').dispatchEvent(new DragEvent('drop',"
        "  {dataTransfer: dt, bubbles: true, cancelable: true}));"
        " done(true); });"
    )
    assert _wait_outcome(browser) == "result", browser.find_element("id", "error").text
    assert "dropped.jpg" in browser.find_element("id", "summary").text
    body = (STATIC / "samples" / "street_1.jpg").read_bytes()
    _check_result(browser, serving_url, body, (512, 256))


@pytest.mark.slow
def test_undecodable_upload_shows_server_message(browser, serving_url, tmp_path):
    path = tmp_path / "broken.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n but not really an image" * 4)
    status, body = _post(serving_url + "/predict?format=json", path.read_bytes())
    assert status == 400
    message = _server_message(body)
    _open_page(browser, serving_url)
    browser.find_element("id", "file-input").send_keys(str(path))
    assert _wait_outcome(browser) == "error"
    error = browser.find_element("id", "error")
    assert error.is_displayed() and error.get_attribute("role") == "alert"
    assert "HTTP 400" in error.text and message in error.text, error.text
    assert not browser.find_element("id", "result").is_displayed()


# ---- the load benchmark's bookkeeping ----------------------------------------------------------

# A recorded locust result (deploy/serving/locustfile.py's BENCH_RESULT): [start_s, latency_ms,
# status] per request, warmup 1 s. After the warmup 4 answers of 200 complete between 1.0 and
# 3.0 s (one started in the warmup), one 503 and one refused connection (status 0).
RECORDED = {
    "warmup_s": 1.0,
    "requests": [
        [0.0, 500.0, 200],  # warmup: ends 0.5 s, not counted in throughput
        [0.5, 700.0, 200],  # started in the warmup, completes at 1.2 s: counted, no latency
        [1.2, 400.0, 200],
        [1.6, 600.0, 200],
        [2.2, 800.0, 200],  # the last completion: 3.0 s
        [2.3, 10.0, 503],
        [2.4, 5.0, 0],
    ],
}


def test_benchmark_summary_of_a_recorded_run():
    benchmark = _benchmark_module()

    lv = benchmark.summarize_level(RECORDED, concurrency=4)
    assert lv["requests"] == 7 and lv["ok"] == 5
    assert lv["errors"] == {"503": 1, "no answer": 1} and lv["error_count"] == 2
    assert lv["window_s"] == pytest.approx(2.0)
    assert lv["throughput"] == pytest.approx(4 / 2.0)
    assert lv["measured"] == 3  # 200s started after the warmup
    assert lv["p50_ms"] == pytest.approx(600.0)
    assert lv["p99_ms"] == pytest.approx(np.percentile([400, 600, 800], 99))

    c1 = dict(benchmark.summarize_level(RECORDED, 1), errors={}, error_count=0, raw_ips=2.0)
    c16 = dict(lv, concurrency=16, raw_ips=2.5)
    (ok1, text1), (ok16, text16) = benchmark.check_targets([c1, c16])
    assert ok1 and "met (2.00 req/s = 1.00x of 2.00 images/s)" in text1
    assert not ok16 and "NOT met" in text16 and "1x 503" in text16
    # only 200s but too slow is a miss too; fast enough with only 200s is met
    assert not benchmark.check_targets([dict(c16, errors={}, error_count=0)])[0][0]
    assert benchmark.check_targets([dict(c16, errors={}, error_count=0, raw_ips=2.0)])[0][0]


def test_benchmark_profile_of_recorded_requests():
    """--profile's table: median per Server-Timing stage, the proxy's share, the raw model."""
    benchmark = _benchmark_module()
    rows = [
        {"client": 70.0, "read": 1.0, "wait": 0.0, "model": 60.0, "app": 64.0},
        {"client": 80.0, "read": 3.0, "wait": 0.2, "model": 62.0, "app": 68.0},
        {"client": 90.0, "read": 2.0, "wait": 0.1, "model": 64.0, "app": 66.0},
    ]
    table = benchmark.render_profile(rows, {"p50_ms": 58.0})
    assert "median of 3 sequential requests" in table
    assert "| read | 2.00 |" in table and "| model | 62.00 |" in table
    assert "| client | 80.00 |" in table
    assert "| client - app (HTTP client, Ray proxy, uvicorn) | 14.00 |" in table
    assert "| client - raw predictor | 22.00 |" in table
    order = [line.split("|")[1].strip() for line in table.splitlines()[3:8]]
    assert order == ["read", "wait", "model", "app", "client"]


class _FakePredictor:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, images):
        import time

        time.sleep(self.seconds)
        return [np.zeros(image.shape[:2], np.uint8) for image in images]


def test_benchmark_raw_reference_is_the_faster_variant():
    benchmark = _benchmark_module()
    predictors = {"slow": _FakePredictor(0.02), "fast": _FakePredictor(0.002)}
    best = benchmark.time_best(predictors, np.zeros((4, 4, 3), np.uint8), seconds=0.1)
    assert set(best["variants"]) == {"slow", "fast"}
    assert best["variants"]["fast"] > 2 * best["variants"]["slow"]
    assert best["images_per_s"] == best["variants"]["fast"]


def test_benchmark_table_goes_between_the_readme_markers():
    benchmark = _benchmark_module()
    from paddle_stdc.utils.readme import replace_block

    level = dict(benchmark.summarize_level(RECORDED, 1), raw_ips=2.5)
    report = {
        "raw": {"backend": "onnxruntime", "threads": 2, "seconds": 10.0, "slots": [2.4, 2.6],
                "images": 50, "images_per_s": 2.5, "p50_ms": 400.0, "p99_ms": 450.0},
        "levels": [level],
        "server_desc": "(default settings, local Ray)",
        "image_desc": "`x.jpg` (512x256, 45 KB)",
        "warmup_s": 1.0,
        "duration_s": 2.0,
        "machine": "2 CPU cores",
        "command": "python tools/benchmark_serving.py --export_dir E",
        "load_before": 0.5,
        "load_after": 0.7,
    }  # fmt: skip
    table = benchmark.render_table(report)
    lines = table.splitlines()
    assert lines[0] == benchmark.README_BEGIN and lines[-1] == benchmark.README_END
    rows = [line for line in lines if line.startswith("| HTTP")]
    assert rows == [
        "| HTTP `POST /predict`, concurrency 1 | 5 | 1x 503, 1x no answer | 2.00 | 2.50 | 0.80x "
        "| 600.0 | 796.0 |"
    ]
    # 2.00 req/s is below 0.9 x 2.50: the note says so, with the numbers
    assert "**Targets NOT all met**" in table and "0.80x of 2.50 images/s" in table
    assert "faster of two settings" not in table
    # ONNX Runtime: each raw timing is the faster of the served and ORT's default setting
    variants = {"as served": [2.4, 2.1], "ORT busy-waiting": [2.0, 2.6]}
    report["raw"] = dict(report["raw"], variants=variants)
    assert (
        "2.40, 2.60 images/s (each the faster of two settings of the predictor -- "
        "as served: 2.40, 2.10; ORT busy-waiting: 2.00, 2.60)" in benchmark.render_table(report)
    )
    readme = f"intro\n{benchmark.README_BEGIN}\nold\n{benchmark.README_END}\nrest\n"
    updated = replace_block(readme, benchmark.README_BEGIN, benchmark.README_END, table)
    assert updated == f"intro\n{table}\nrest\n"
    assert replace_block(updated, benchmark.README_BEGIN, benchmark.README_END, table) == updated


class _Counting(BaseHTTPRequestHandler):
    """Answers POSTs: every third one 503 (with Retry-After), the others 200."""

    protocol_version = "HTTP/1.1"
    counts: dict = {}
    lock = threading.Lock()

    def log_message(self, *args):
        pass

    def do_POST(self):  # noqa: N802 - http.server's name
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.lock:
            n = sum(self.counts.values()) + 1
            status = 503 if n % 3 == 0 else 200
            self.counts[status] = self.counts.get(status, 0) + 1
        body = b"{}" if status == 200 else b'{"error": "busy"}'
        self.send_response(status)
        if status == 503:
            self.send_header("Retry-After", "1")
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.slow
def test_locust_run_records_every_answer(tmp_path):
    benchmark = _benchmark_module()

    if shutil.which("locust") is None:
        try:
            subprocess.run([sys.executable, "-m", "locust", "--version"], check=True,
                           capture_output=True, timeout=60)  # fmt: skip
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
            _missing('locust is not installed: pip install -e ".[serve]"')
    _Counting.counts = {}
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Counting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        image = STATIC / "samples" / "street_1.jpg"
        result = benchmark.run_locust(
            url, image, concurrency=2, duration=2.0, warmup=1.0,
            result=tmp_path / "c2.json", log=tmp_path / "c2.log",
        )  # fmt: skip
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
    counts = dict(_Counting.counts)
    recorded = result["requests"]
    statuses = [r[2] for r in recorded]
    assert result["image_bytes"] == image.stat().st_size and result["warmup_s"] == 1.0
    # every answer the server sent is recorded, but for at most one in flight per user at the end
    for status in (200, 503):
        assert counts[status] - 2 <= statuses.count(status) <= counts[status], (counts, status)
    assert set(statuses) == {200, 503}
    lv = benchmark.summarize_level(result, 2)
    assert lv["errors"] == {"503": statuses.count(503)}
    assert lv["throughput"] > 0 and 0 < lv["p50_ms"] <= lv["p99_ms"] < 2000
    assert 1.0 <= lv["window_s"] <= 2.1
