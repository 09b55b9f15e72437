"""The backend table: which runtime runs an export, at which precision, on which device.

One place maps (backend, precision, device) to a predictor with one interface (``run`` on an
(N, 3, H, W) float32 batch, ``predict`` on BGR images, ``deploy``, ``backend``,
``precision``); ``infer.py`` (images, video, ``--benchmark``), serving, ``tools/benchmark.py``
and ``quantize.py`` all read it::

    backend      device  precisions       reads (deploy.yaml key)
    paddle       cpu     fp32 bf16        model + params       (bf16: oneDNN bfloat16)
    paddle       gpu     fp32 fp16 int8   model + params       (fp16/int8: TensorRT)
    onnxruntime  cpu     fp32 int8        onnx, onnx_int8      (int8: quantize.py)
    openvino     cpu     fp32 bf16 int8   onnx, openvino_int8  (int8: quantize.py --backend ...)

An unavailable combination -- package not installed, precision or device the backend does not
run, export without the file -- is a :class:`BackendError` of one line naming what is installed
and what the export can run.

``auto`` never lowers precision: among the backends that are installed and whose files the
export has, it takes the fastest for the requested precision (fp32 unless asked), decided by a
short measurement (alternating warm runs of each candidate on the export's input shape) that is
logged and cached per export, machine, threads and shape in a small JSON file
(:func:`cache_file`), so a restart does not measure again.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import platform
import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from deploy.python.predictor import (
    OnnxPredictor,
    OpenVinoPredictor,
    Predictor,
    RuntimeOptions,
    _MaskPredictor,
)
from deploy.schema import DEPLOY_FILE, read_deploy

logger = logging.getLogger(__name__)

DEVICES = ("cpu", "gpu")
PRECISIONS = ("fp32", "fp16", "bf16", "int8")
#: How to make a model file the export does not have yet (deploy.yaml key -> command).
FILE_HINTS = {
    "onnx": "export with tools/export.py --format onnx",
    "onnx_int8": "run deploy/python/quantize.py --export_dir DIR --calib_dir IMAGES",
    "openvino_int8": "run deploy/python/quantize.py --export_dir DIR --calib_dir IMAGES "
    "--backend openvino",
}
#: Input (N, C, H, W) ``auto`` measures on when the export fixes no size and none is given.
DEFAULT_PROBE_SHAPE = (1, 3, 512, 1024)
CACHE_ENV = "PADDLE_STDC_CACHE"

Factory = Callable[[Path, RuntimeOptions], _MaskPredictor]


class BackendError(ValueError):
    """A (backend, precision, device) this installation or this export cannot run."""


@dataclass(frozen=True)
class Backend:
    """One row of the table: what a runtime runs and which export files it reads."""

    name: str
    module: str  # import name: installed when it can be found
    install: str  # how to install it
    precisions: Dict[str, Tuple[str, ...]]  # device -> precisions
    files: Dict[str, Tuple[str, ...]]  # precision -> deploy.yaml keys of the files it reads
    make: Factory
    #: PaddleSeg's flags: (device, precision) run at another precision with a warning
    fallback: Dict[Tuple[str, str], str] = field(default_factory=dict)


def _paddle(export_dir: Path, options: RuntimeOptions) -> _MaskPredictor:
    return Predictor(export_dir, options)


def _onnxruntime(export_dir: Path, options: RuntimeOptions) -> _MaskPredictor:
    return OnnxPredictor(export_dir, options.precision, options.cpu_threads, options.ort_spinning)


def _openvino(export_dir: Path, options: RuntimeOptions) -> _MaskPredictor:
    return OpenVinoPredictor(export_dir, options.precision, options.cpu_threads)


_PADDLE_FILES = ("model", "params")
TABLE: Dict[str, Backend] = {
    "paddle": Backend(
        "paddle", "paddle", "pip install paddlepaddle (or paddlepaddle-gpu)",
        {"cpu": ("fp32", "bf16"), "gpu": ("fp32", "fp16", "int8")},
        {p: _PADDLE_FILES for p in ("fp32", "bf16", "fp16", "int8")}, _paddle,
        fallback={("cpu", "fp16"): "fp32", ("cpu", "int8"): "fp32", ("gpu", "bf16"): "fp32"},
    ),
    "onnxruntime": Backend(
        "onnxruntime", "onnxruntime", 'pip install -e ".[onnx]"',
        {"cpu": ("fp32", "int8")}, {"fp32": ("onnx",), "int8": ("onnx_int8",)}, _onnxruntime,
    ),
    "openvino": Backend(
        "openvino", "openvino", 'pip install -e ".[openvino]"',
        {"cpu": ("fp32", "bf16", "int8")},
        {"fp32": ("onnx",), "bf16": ("onnx",), "int8": ("openvino_int8",)}, _openvino,
    ),
}  # fmt: skip
BACKENDS = tuple(TABLE)
#: What ``--backend`` accepts.
CHOICES = ("auto", *BACKENDS)


def combinations() -> List[Tuple[str, str, str]]:
    """Every (backend, device, precision) the table names."""
    return [(b.name, d, p) for b in TABLE.values() for d, ps in b.precisions.items() for p in ps]


def is_installed(backend: str) -> bool:
    """Whether the backend's package can be imported (found, not imported: that is slow)."""
    return importlib.util.find_spec(TABLE[backend].module) is not None


def installed() -> List[str]:
    """The backends whose packages are installed."""
    return [name for name in BACKENDS if is_installed(name)]


def _paddle_has_cuda() -> bool:
    import paddle

    return bool(paddle.is_compiled_with_cuda())


def _runs(name: str) -> str:
    spec = TABLE[name]
    return "; ".join(f"{d}: {' '.join(ps)}" for d, ps in spec.precisions.items())


def check(
    backend: str, precision: str, device: str, deploy: Optional[Dict[str, Any]] = None,
    export_dir: Optional[Path] = None,
) -> None:  # fmt: skip
    """Raise BackendError (one line) unless ``backend`` can run ``precision`` on ``device``
    here, and -- given the export's ``deploy`` mapping -- the export has the files it reads."""
    spec = TABLE.get(backend)
    if spec is None:
        raise BackendError(f"--backend {backend!r}: choose from {', '.join(CHOICES)}")
    if device not in spec.precisions:
        raise BackendError(
            f"--backend {backend} runs on {' or '.join(spec.precisions)}, not --device {device}"
        )
    if precision not in spec.precisions[device]:
        others = [b for b, d, p in combinations() if d == device and p == precision]
        where = f"; --precision {precision} on {device}: --backend {' or '.join(others)}"
        raise BackendError(
            f"--backend {backend} does not run --precision {precision} on {device} "
            f"({backend} runs {_runs(backend)}){where if others else ''}"
        )
    if not is_installed(backend):
        raise BackendError(
            f"--backend {backend} needs the {spec.module} package, which is not installed "
            f"(installed backends: {', '.join(installed()) or 'none'}); {spec.install}"
        )
    if backend == "paddle" and device == "gpu" and not _paddle_has_cuda():
        raise BackendError(
            "--device gpu: this Paddle build has no CUDA (paddle.is_compiled_with_cuda() is "
            "False); use --device cpu or install paddlepaddle-gpu"
        )
    if deploy is None:
        return
    for key in spec.files[precision]:
        if not deploy.get(key):
            path = Path(export_dir or ".") / DEPLOY_FILE
            runnable = runnable_here(deploy, device)
            raise BackendError(
                f"--backend {backend} --precision {precision}: {path} has no Deploy.{key}; "
                f"{FILE_HINTS[key]} (this export runs here: {', '.join(runnable) or 'nothing'})"
            )


def runnable_here(deploy: Dict[str, Any], device: str = "cpu") -> List[str]:
    """``backend precision`` pairs this installation can run for the export on ``device``."""
    out = []
    for name, dev, precision in combinations():
        spec = TABLE[name]
        if dev == device and is_installed(name):
            if all(deploy.get(key) for key in spec.files[precision]):
                out.append(f"{name} {precision}")
    return out


def fallback(backend: str, device: str, precision: str) -> Tuple[str, Optional[str]]:
    """(precision to run, warning or None): PaddleSeg's infer.py runs Paddle Inference at fp32
    when given a TensorRT precision on CPU (or bf16 on GPU); other backends do not guess."""
    spec = TABLE.get(backend)
    target = spec.fallback.get((device, precision)) if spec else None
    if target is None:
        return precision, None
    if device == "cpu":
        why = f"--precision {precision} is a TensorRT (GPU) precision; running {target} on CPU"
    else:
        why = f"--precision {precision} is oneDNN's (CPU); running {target} on GPU"
    return target, why


def candidates(deploy: Dict[str, Any], device: str, precision: str) -> List[str]:
    """Backends ``auto`` may choose: installed, running ``precision`` on ``device``, and whose
    files the export has."""
    out = []
    for name in BACKENDS:
        try:
            check(name, precision, device, deploy)
        except BackendError:
            continue
        out.append(name)
    return out


# ------------------------------------------------------------------------ auto: measure once


def probe_shape(deploy: Dict[str, Any], hint: Optional[Sequence[int]] = None) -> List[int]:
    """The (N, C, H, W) ``auto`` measures on: the export's fixed dimensions; then the size its
    last Resize/Padding produces; then ``hint`` (e.g. the first image's); then 1x3x512x1024."""
    fixed = list(deploy["input_shape"])
    base = list(hint) if hint is not None else list(DEFAULT_PROBE_SHAPE)
    for t in deploy.get("transforms", []):
        if t["type"] in ("Resize", "Padding"):
            w, h = t["target_size"]
            base[2:] = [int(h), int(w)]
    base[0] = 1 if hint is None else base[0]
    return [f if f > 0 else b for f, b in zip(fixed, base)]


def cache_file() -> Path:
    """Where ``auto``'s measurements are kept: ``$PADDLE_STDC_CACHE``, else the user's cache
    folder (``$XDG_CACHE_HOME`` or ~/.cache) ``/paddle_stdc/auto_backend.json``."""
    root = os.environ.get(CACHE_ENV)
    if not root:
        xdg = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
        root = str(Path(xdg) / "paddle_stdc")
    return Path(root) / "auto_backend.json"


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "?"


def cache_key(
    export_dir: Path, deploy: Dict[str, Any], names: Sequence[str], options: RuntimeOptions,
    shape: Sequence[int],
) -> Tuple[str, Dict[str, Any]]:  # fmt: skip
    """(key, what it stands for): the export's files (path, size, mtime), the machine, the
    threads, device, precision, shape and the candidates' package versions."""
    files = sorted({key for n in names for key in TABLE[n].files[options.precision]})
    stats = []
    for key in files:
        path = (export_dir / str(deploy[key])).resolve()
        st = path.stat()
        stats.append([str(path), st.st_size, st.st_mtime_ns])
    dists = {"paddle": "paddlepaddle", "onnxruntime": "onnxruntime", "openvino": "openvino"}
    what = {
        "export_dir": str(export_dir.resolve()), "files": stats,
        "machine": [platform.node(), _cpu_name(), os.cpu_count()],
        "threads": options.cpu_threads, "device": options.device, "precision": options.precision,
        "shape": list(shape), "candidates": {n: _version(dists[n]) for n in names},
    }  # fmt: skip
    digest = hashlib.sha1(json.dumps(what, sort_keys=True).encode()).hexdigest()[:16]
    return digest, what


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive lock next to ``path`` (replicas starting together measure once)."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX: no lock
        yield
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_suffix(".lock"), "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _read_cache(path: Path) -> Dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def measure(
    predictors: Dict[str, _MaskPredictor], shape: Sequence[int], warmup: int = 2, rounds: int = 3
) -> Dict[str, float]:
    """Median ms per ``run`` of each predictor on one random input, runs alternating between
    predictors so load on the machine hits all of them alike."""
    x = np.random.RandomState(0).uniform(-1, 1, list(shape)).astype(np.float32)
    for predictor in predictors.values():
        for _ in range(warmup):
            predictor.run(x)
    times: Dict[str, List[float]] = {name: [] for name in predictors}
    for _ in range(rounds):
        for name, predictor in predictors.items():
            tic = time.perf_counter()
            predictor.run(x)
            times[name].append((time.perf_counter() - tic) * 1000)
    return {name: round(statistics.median(t), 2) for name, t in times.items()}


def choose_auto(
    export_dir: Path, deploy: Dict[str, Any], options: RuntimeOptions,
    shape_hint: Optional[Sequence[int]] = None, log: Callable[[str], None] = logger.info,
) -> Tuple[str, Optional[_MaskPredictor]]:  # fmt: skip
    """``auto``: (backend, its predictor if one was built while measuring, else None).

    One candidate is taken as is; several are measured once per export, machine, threads and
    shape (the result is cached in :func:`cache_file`), and the choice is logged either way.
    """
    names = candidates(deploy, options.device, options.precision)
    if not names:
        raise BackendError(
            f"--backend auto: no installed backend runs --precision {options.precision} on "
            f"{options.device} for {export_dir} (installed: {', '.join(installed()) or 'none'}; "
            f"this export runs here: {', '.join(runnable_here(deploy, options.device)) or '-'})"
        )
    if len(names) == 1:
        log(f"auto backend: {names[0]} (the only backend that runs {options.precision} on "
            f"{options.device} for this export here)")  # fmt: skip
        return names[0], None
    shape = probe_shape(deploy, shape_hint)
    key, what = cache_key(export_dir, deploy, names, options, shape)
    path = cache_file()
    with _locked(path):
        entry = _read_cache(path).get(key)
        built: Dict[str, _MaskPredictor] = {}
        if entry is None:
            built = {name: TABLE[name].make(export_dir, options) for name in names}
            ms = measure(built, shape)
            entry = {"backend": min(ms, key=ms.get), "ms": ms, **what,
                     "measured": time.strftime("%Y-%m-%d %H:%M:%S")}  # fmt: skip
            _write_cache(path, key, entry, log)
            how = "measured"
        else:
            how = f"cached in {path}"
    timings = ", ".join(f"{n} {entry['ms'][n]:g} ms" for n in names)
    log(f"auto backend: {entry['backend']} ({options.precision}, {how}: {timings} per run at "
        f"{'x'.join(map(str, shape))}, {options.cpu_threads} threads)")  # fmt: skip
    return entry["backend"], built.get(entry["backend"])


def _write_cache(path: Path, key: str, entry: Dict[str, Any], log: Callable[[str], None]):
    data = _read_cache(path)
    data[key] = entry
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(json.dumps(data, indent=1))
        tmp.replace(path)
    except OSError as err:
        log(f"auto backend: cannot cache the measurement in {path} ({err}); set {CACHE_ENV}")


def create_predictor(
    export_dir: str | Path, backend: str = "auto", options: Optional[RuntimeOptions] = None,
    *, shape_hint: Optional[Sequence[int]] = None, log: Callable[[str], None] = logger.info,
) -> _MaskPredictor:  # fmt: skip
    """The predictor the table names for (``backend``, ``options.precision``,
    ``options.device``); ``auto`` measures (see :func:`choose_auto`). BackendError if the
    combination cannot run here; ``predictor.backend`` says which backend runs."""
    export_dir = Path(export_dir)
    options = options or RuntimeOptions()
    deploy = read_deploy(export_dir)
    if backend == "auto":
        backend, built = choose_auto(export_dir, deploy, options, shape_hint, log)
        if built is not None:
            return built
    check(backend, options.precision, options.device, deploy, export_dir)
    return TABLE[backend].make(export_dir, options)
