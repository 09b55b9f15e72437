"""Device, CPU-thread, distributed and mixed-precision settings of a run; the EMA of the
weights (``--use_ema``) and the operator profiler (``--profiler_options``)."""

from __future__ import annotations

import contextlib
import copy
import hashlib
import io
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import ContextManager, Mapping, Optional, Tuple

import paddle
import paddle.nn as nn

logger = logging.getLogger("paddle_stdc")

PRECISIONS = ("fp32", "fp16", "bf16")


def on_gpu() -> bool:
    return paddle.get_device().startswith("gpu")


# ------------------------------------------------------------------------- CPU threads
#
# Paddle's dygraph CPU kernels (oneDNN, MKL, OpenMP) run on one thread unless told otherwise:
# ``import paddle`` sets OMP_NUM_THREADS=1 when it is unset. A run on CPU uses the cores the
# process may run on instead -- its CPU affinity, capped by its cgroup's CPU quota (rounded
# up, as Go's runtime does) -- unless ``--cpu_threads`` (``cpu_threads=``) or the user's
# OMP_NUM_THREADS say otherwise. Rule for data-loader worker processes: each runs with one
# thread (:func:`paddle_stdc.data.loading.single_thread_worker`) and the compute threads are
# the cores left, ``max(1, cores // processes - workers)``; so the process tree never runs
# more busy threads than cores. ``paddle.base.core.set_num_threads`` takes effect when it
# is called, also after the first operators, so the environment need not be set before
# ``import paddle`` (measured: the busy OS threads of a conv loop go from 1 to 2; see
# tests/test_cpu_threads.py). Lowering the count after multi-threaded kernels ran does not
# reliably take effect (a second thread kept ~half of the work), so train(), evaluate() and
# predict() set it first, and the evaluation inside training keeps the training's count.


@dataclass(frozen=True)
class CpuThreads:
    """How many compute threads a CPU run uses, and what decided it (for the log line)."""

    threads: int
    affinity: int
    quota: Optional[float]
    env: Optional[str]
    flag: Optional[int]
    workers: int = 0
    processes: int = 1

    def describe(self) -> str:
        """One log line, e.g. ``CPU: 2 threads (affinity 2, cgroup quota none;
        OMP_NUM_THREADS unset; 0 loader workers)``."""
        quota = "none" if self.quota is None else f"{self.quota:g} CPUs"
        env = "OMP_NUM_THREADS unset" if self.env is None else f"OMP_NUM_THREADS={self.env}"
        if self.flag is not None:
            why = "from --cpu_threads; "
        elif _positive_int(self.env) is not None:
            why = "from OMP_NUM_THREADS; "
        else:
            why = ""
        procs = f", {self.processes} processes" if self.processes > 1 else ""
        facts = (
            f"affinity {self.affinity}, cgroup quota {quota}; {env}; "
            f"{self.workers} loader workers{procs}"
        )
        plural = "thread" if self.threads == 1 else "threads"
        return f"CPU: {self.threads} {plural} ({why}{facts})"


def _positive_int(text: Optional[str]) -> Optional[int]:
    try:
        value = int(str(text).strip())
    except ValueError:
        return None
    return value if value > 0 else None


def parse_cpu_quota(
    cpu_max: Optional[str] = None,
    cfs_quota_us: Optional[str] = None,
    cfs_period_us: Optional[str] = None,
) -> Optional[float]:
    """CPUs a cgroup quota allows, from cgroup v2's ``cpu.max`` text (``"200000 100000"``,
    ``"max 100000"``) or v1's ``cpu.cfs_quota_us`` / ``cpu.cfs_period_us`` (quota ``-1``:
    none); None when there is no quota or the text is not one."""
    if cpu_max is not None:
        parts = cpu_max.split()
        if len(parts) == 2 and parts[0] != "max":
            quota, period = _positive_int(parts[0]), _positive_int(parts[1])
            if quota and period:
                return quota / period
        return None
    quota, period = _positive_int(cfs_quota_us), _positive_int(cfs_period_us)
    return quota / period if quota and period else None


def plan_cpu_threads(
    affinity: int,
    quota: Optional[float] = None,
    env: Optional[str] = None,
    flag: Optional[int] = None,
    workers: int = 0,
    processes: int = 1,
) -> CpuThreads:
    """The compute threads of one process (pure: the facts in, the decision out).

    ``flag`` (``--cpu_threads``, > 0) wins, then ``env`` (the user's OMP_NUM_THREADS, a
    positive integer), else the cores this process may use -- ``min(affinity,
    ceil(quota))`` shared by ``processes`` -- minus one per data-loader ``worker``, at least 1.
    """
    if flag is not None and flag < 1:
        raise ValueError(f"--cpu_threads must be a positive integer, got {flag}")
    cores = max(1, affinity)
    if quota is not None:
        cores = min(cores, max(1, math.ceil(quota)))
    if flag is not None:
        threads = flag
    elif _positive_int(env) is not None:
        threads = _positive_int(env)
    else:
        threads = max(1, cores // max(1, processes) - max(0, workers))
    return CpuThreads(threads, affinity, quota, env, flag, max(0, workers), max(1, processes))


def _read(path: Path) -> Optional[str]:
    try:
        return path.read_text()
    except OSError:
        return None


def _ancestors(path: str) -> list:
    """``a/b/c`` -> ``["a/b/c", "a/b", "a", ""]`` (a cgroup and the ones above it)."""
    parts = [p for p in path.split("/") if p]
    return ["/".join(parts[:i]) for i in range(len(parts), -1, -1)]


def _min_quota(quotas: list) -> Optional[float]:
    found = [q for q in quotas if q is not None]
    return min(found) if found else None


def cgroup_cpu_quota(
    root: str = "/sys/fs/cgroup", proc_cgroup: Optional[str] = None
) -> Optional[float]:
    """This process's cgroup CPU quota in CPUs (None: no quota, or no cgroup files).

    Reads cgroup v2 ``cpu.max`` or v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` of the
    process's cgroup (from ``/proc/self/cgroup``, or ``proc_cgroup`` text) and of every cgroup
    above it under ``root`` (the tightest quota wins; a container sees its own cgroup at the
    mount's top).
    """
    if proc_cgroup is None:
        proc_cgroup = _read(Path("/proc/self/cgroup")) or ""
    base = Path(root)
    v1_path = v2_path = ""
    for line in proc_cgroup.splitlines():
        hier, _, rest = line.partition(":")
        controllers, _, path = rest.partition(":")
        if hier == "0" and controllers == "":
            v2_path = path
        elif "cpu" in controllers.split(","):
            v1_path = path
    for mount in (base, base / "unified"):
        texts = [_read(mount / cg / "cpu.max") for cg in _ancestors(v2_path)]
        if any(t is not None for t in texts):
            return _min_quota([parse_cpu_quota(cpu_max=t) for t in texts if t is not None])
    for mount in (base / "cpu", base / "cpu,cpuacct", base / "cpuacct,cpu"):
        quotas = [
            parse_cpu_quota(None, quota, _read(mount / cg / "cpu.cfs_period_us"))
            for cg in _ancestors(v1_path)
            if (quota := _read(mount / cg / "cpu.cfs_quota_us")) is not None
        ]
        if quotas:
            return _min_quota(quotas)
    return None


def user_omp_num_threads(environ: Optional[Mapping[str, str]] = None) -> Optional[str]:
    """OMP_NUM_THREADS as the user set it, not the ``1`` that ``import paddle`` writes when it
    is unset: the value before that import (see :mod:`paddle_stdc._startup`), or, when Paddle
    was imported first, the environment the process started with (``/proc/self/environ``)."""
    if environ is not None:
        return environ.get("OMP_NUM_THREADS")
    from paddle_stdc import _startup

    if not _startup.PADDLE_IMPORTED_FIRST:
        return _startup.OMP_NUM_THREADS
    initial = _read_bytes("/proc/self/environ")
    if initial is None:
        return os.environ.get("OMP_NUM_THREADS")
    for item in initial.split(b"\0"):
        key, _, value = item.partition(b"=")
        if key == b"OMP_NUM_THREADS":
            return value.decode(errors="replace")
    return None


def _read_bytes(path: str) -> Optional[bytes]:
    try:
        return Path(path).read_bytes()
    except OSError:
        return None


def _affinity() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


_applied: dict = {}


def configure_cpu_threads(
    cpu_threads: Optional[int] = None,
    num_workers: int = 0,
    processes: int = 1,
    log: Optional[logging.Logger] = None,
) -> Optional[CpuThreads]:
    """Give Paddle's CPU kernels the threads :func:`plan_cpu_threads` decides for this process
    (its affinity, cgroup quota, the user's OMP_NUM_THREADS, ``cpu_threads``, loader workers)
    and log the decision when the count changes. No-op on GPU (returns None)."""
    if on_gpu():
        return None
    plan = plan_cpu_threads(
        _affinity(), cgroup_cpu_quota(), user_omp_num_threads(), cpu_threads, num_workers,
        processes,
    )  # fmt: skip
    paddle.base.core.set_num_threads(plan.threads)
    previous = _applied.get("plan")
    if previous is None or previous.threads != plan.threads:
        (log or logger).info(plan.describe())
    _applied["plan"] = plan
    return plan


def applied_cpu_threads() -> Optional[int]:
    """The thread count :func:`configure_cpu_threads` last gave Paddle (None: never called)."""
    plan = _applied.get("plan")
    return plan.threads if plan is not None else None


@dataclass
class DistInfo:
    """Rank and world size of this process (1 process unless launched by paddle.distributed)."""

    rank: int
    world_size: int

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def prepare_model(self, model: nn.Layer) -> nn.Layer:
        """Wrap ``model`` for data-parallel training; SyncBatchNorm where the device has it."""
        if self.world_size <= 1:
            return model
        if not paddle.distributed.is_initialized():
            paddle.distributed.init_parallel_env()
        if on_gpu():
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            logger.warning(
                "SyncBatchNorm has no kernel on %s; using per-process BatchNorm",
                paddle.get_device(),
            )
        return paddle.DataParallel(model)


def sync_buffers(model: nn.Layer) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every process.

    Data-parallel training keeps parameters equal across processes, but without SyncBN each
    process updates its own BN statistics. Syncing them before evaluation and saving makes
    the evaluated model the saved one, so a multi-process evaluation equals a single-process
    evaluation of the checkpoint.
    """
    if paddle.distributed.get_world_size() <= 1:
        return
    for tensor in _statistics(model):
        paddle.distributed.broadcast(tensor, src=0)


def _statistics(model: nn.Layer) -> list:
    """Non-trained state: buffers and stop-gradient parameters (Paddle's BN ``_mean``,
    ``_variance`` are parameters with ``stop_gradient=True``), in a fixed order."""
    named = [(n, t) for n, t in model.named_parameters() if t.stop_gradient]
    named += list(model.named_buffers())
    return [t for _, t in sorted(named, key=lambda kv: kv[0])]


def fingerprint(model: nn.Layer, buffers: bool = False) -> str:
    """A short hash of the trained parameters' (or the statistics') bytes, to compare
    processes or runs."""
    digest = hashlib.sha256()
    if buffers:
        tensors = _statistics(model)
    else:
        trained = sorted(model.named_parameters(), key=lambda kv: kv[0])
        tensors = [t for _, t in trained if not t.stop_gradient]
    for value in tensors:
        digest.update(value.numpy().tobytes())
    return digest.hexdigest()[:16]


def dist_info() -> DistInfo:
    env = paddle.distributed.ParallelEnv()
    return DistInfo(rank=env.rank, world_size=max(1, env.world_size))


@dataclass
class AmpSettings:
    """The one mixed-precision policy of training and evaluation: fp16 (with loss scaling when
    training) or bf16 on GPU, fp32 elsewhere (``paddle.amp`` has no effect on CPU)."""

    precision: str = "fp32"
    level: str = "O1"
    scaler: Optional[paddle.amp.GradScaler] = None

    @classmethod
    def create(
        cls,
        precision: str = "fp32",
        level: str = "O1",
        training: bool = True,
        log: Optional[logging.Logger] = None,
    ) -> AmpSettings:
        """Validate ``precision``; on CPU fall back to fp32 and say so once per process."""
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if level not in ("O1", "O2"):
            raise ValueError(f"amp_level must be O1 or O2, got {level!r}")
        if precision != "fp32" and not on_gpu():
            _note_cpu_fallback(precision, log or logger)
            return cls("fp32", level)
        fp16_training = training and precision == "fp16"
        scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if fp16_training else None
        return cls(precision, level, scaler)

    def autocast(self) -> ContextManager:
        """A fresh autocast context (Paddle's are single-use)."""
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(
            enable=True,
            level=self.level,
            dtype="float16" if self.precision == "fp16" else "bfloat16",
            custom_black_list=AMP_BLACK_LIST,
        )


#: Ops kept in fp32 under autocast: resizing of logits and the loss.
AMP_BLACK_LIST = {"bilinear_interp_v2", "softmax_with_cross_entropy"}
_cpu_fallback_noted: set = set()


def _note_cpu_fallback(precision: str, log: logging.Logger) -> None:
    if precision in _cpu_fallback_noted:
        return
    _cpu_fallback_noted.add(precision)
    log.warning(
        "precision=%s needs a GPU; paddle.amp has no effect on %s, running in fp32",
        precision,
        paddle.get_device(),
    )


#: PaddleSeg 2.8's EMA decay (``paddleseg.utils.ema.update_ema_model``).
EMA_DECAY = 0.999


def ema_decay(step: int, decay: float = EMA_DECAY) -> float:
    """PaddleSeg's warm-up: ``min(1 - 1 / (step + 1), decay)`` at 1-based iteration ``step``."""
    return min(1.0 - 1.0 / (step + 1), decay)


class ModelEMA:
    """An exponential moving average of a model's floating-point state, as PaddleSeg 2.8.

    A copy of the model (eval mode, no gradients) whose every floating state-dict entry
    (parameters and BatchNorm statistics) becomes ``d * ema + (1 - d) * model`` after
    iteration ``step``, with ``d = ema_decay(step)``; other entries are left as copied.
    """

    def __init__(self, model: nn.Layer, decay: float = EMA_DECAY) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model)
        self.model.eval()
        for param in self.model.parameters():
            param.stop_gradient = True

    def reset(self, model: nn.Layer) -> None:
        """Copy ``model``'s floating state (PaddleSeg's ``init_ema_params``)."""
        src = model.state_dict()
        with paddle.no_grad():
            for key, value in self.model.state_dict().items():
                if paddle.is_floating_point(value):
                    value.set_value(src[key].detach())

    def update(self, model: nn.Layer, step: int) -> None:
        """Average in ``model``'s state after 1-based iteration ``step``."""
        d = ema_decay(step, self.decay)
        src = model.state_dict()
        with paddle.no_grad():
            for key, value in self.model.state_dict().items():
                if paddle.is_floating_point(value):
                    value.set_value(value * d + src[key].detach() * (1.0 - d))


_PROFILER_STATES = ("CPU", "GPU", "All")
_SORTED_KEYS = {"calls": "Total", "total": "Total", "max": "Max", "min": "Min", "ave": "Avg"}
_TRACER_OPTIONS = ("Default", "OpDetail", "AllOpDetail")


class ProfilerOptionsError(ValueError):
    """A bad ``--profiler_options`` string (the message names the key or value)."""


@dataclass
class ProfilerOptions:
    """PaddleSeg's ``--profiler_options "key1=value1;key2=value2"`` (its defaults).

    ``batch_range=[a,b]`` records the batches a .. b-1 (0-based) of this process, i.e. the
    iterations after the first ``a`` up to the ``b``-th; ``exit_on_finished`` stops training
    after them (no checkpoint, like PaddleSeg's ``sys.exit(0)``). The Chrome trace goes to
    ``profile_path`` and the operator summary to ``profile_path + ".summary.txt"``.
    """

    batch_range: Tuple[int, int] = (10, 20)
    state: str = "All"
    sorted_key: str = "total"
    tracer_option: str = "Default"
    profile_path: str = "/tmp/profile"
    exit_on_finished: bool = True

    @classmethod
    def parse(cls, text: str) -> ProfilerOptions:
        """Parse ``text``; a :class:`ProfilerOptionsError` names the bad key or value."""
        opts = cls()
        for item in filter(None, text.replace(" ", "").split(";")):
            key, sep, value = item.partition("=")
            if not sep or not value:
                raise ProfilerOptionsError(f"profiler option {item!r} is not key=value")
            opts._set(key, value)
        return opts

    def _set(self, key: str, value: str) -> None:
        if key == "batch_range":
            self.batch_range = _parse_batch_range(value)
        elif key == "exit_on_finished":
            self.exit_on_finished = value.lower() in ("yes", "true", "t", "1")
        elif key in ("state", "sorted_key", "tracer_option"):
            allowed = {"state": _PROFILER_STATES, "sorted_key": tuple(_SORTED_KEYS),
                       "tracer_option": _TRACER_OPTIONS}[key]  # fmt: skip
            if value not in allowed:
                raise ProfilerOptionsError(
                    f"profiler option {key}={value}: use one of {list(allowed)}"
                )
            setattr(self, key, value)
        elif key == "profile_path":
            self.profile_path = value
        else:
            raise ProfilerOptionsError(
                f"unknown profiler option {key!r}; known: batch_range, state, sorted_key, "
                "tracer_option, profile_path, exit_on_finished"
            )


def _parse_batch_range(value: str) -> Tuple[int, int]:
    try:
        bounds = [int(v) for v in value.strip("[]").split(",")]
    except ValueError:
        bounds = []
    if len(bounds) != 2 or not 0 <= bounds[0] < bounds[1]:
        raise ProfilerOptionsError(
            f"profiler option batch_range={value}: give [start,end] with 0 <= start < end"
        )
    return bounds[0], bounds[1]


class TrainProfiler:
    """Runs ``paddle.profiler`` over ``options.batch_range``; call :meth:`step` after each
    training iteration. Writes the trace and the summary when the range ends."""

    def __init__(self, options: ProfilerOptions, rank: int = 0) -> None:
        self.options = options
        suffix = f".rank{rank}" if rank else ""
        self.trace_path = Path(options.profile_path + suffix)
        self.summary_path = Path(f"{self.trace_path}.summary.txt")
        if self.trace_path.is_dir():
            raise ProfilerOptionsError(
                f"profile_path {self.trace_path} is a folder; give a file name"
            )
        self.steps, self.finished = 0, False
        self._prof: Optional[paddle.profiler.Profiler] = None
        if options.batch_range[0] == 0:
            self._start()

    def _targets(self) -> list:
        targets = [paddle.profiler.ProfilerTarget.CPU]
        if self.options.state != "CPU" and on_gpu():
            targets.append(paddle.profiler.ProfilerTarget.GPU)
        return targets

    def _start(self) -> None:
        detail = self.options.tracer_option == "AllOpDetail"
        self._prof = paddle.profiler.Profiler(
            targets=self._targets(), on_trace_ready=lambda prof: None, record_shapes=detail
        )
        self._prof.start()

    def step(self) -> bool:
        """Count one finished iteration; True when the range just ended and the options ask
        training to stop there."""
        if self.finished:
            return False
        self.steps += 1
        if self.steps == self.options.batch_range[1]:
            self._finish()  # stop() ends the last recorded step
            return self.options.exit_on_finished
        if self._prof is not None:
            self._prof.step()
        if self.steps == self.options.batch_range[0]:
            self._start()
        return False

    def _finish(self) -> None:
        prof, self._prof, self.finished = self._prof, None, True
        prof.stop()
        self.trace_path.parent.mkdir(parents=True, exist_ok=True)
        prof.export(str(self.trace_path), format="json")
        self.summary_path.write_text(self.summary(prof))
        a, b = self.options.batch_range
        logger.info(
            "[PROFILER] batches %d..%d: trace %s, summary %s",
            a, b - 1, self.trace_path, self.summary_path,
        )  # fmt: skip

    def summary(self, prof: paddle.profiler.Profiler) -> str:
        """The operator summary table, sorted by the option ``sorted_key``."""
        device = "GPU" if self.options.state == "GPU" and on_gpu() else "CPU"
        key = getattr(paddle.profiler.SortedKeys, device + _SORTED_KEYS[self.options.sorted_key])
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            prof.summary(
                sorted_by=key, op_detail=self.options.tracer_option != "Default", time_unit="ms"
            )
        return out.getvalue()

    def close(self) -> None:
        """Stop a profiler still running (training ended inside the range) without writing."""
        if self._prof is not None:
            self._prof.stop()
            self._prof = None
