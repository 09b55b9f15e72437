"""Device, distributed and mixed-precision settings of a run."""

from __future__ import annotations

import contextlib
import hashlib
import logging
from dataclasses import dataclass
from typing import ContextManager, Optional

import paddle
import paddle.nn as nn

logger = logging.getLogger("paddle_stdc")

PRECISIONS = ("fp32", "fp16", "bf16")


def on_gpu() -> bool:
    return paddle.get_device().startswith("gpu")


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
    """Automatic mixed precision: fp16 (with loss scaling) or bf16 on GPU; fp32 elsewhere."""

    precision: str = "fp32"
    level: str = "O1"
    scaler: Optional[paddle.amp.GradScaler] = None

    @classmethod
    def create(cls, precision: str = "fp32", level: str = "O1") -> AmpSettings:
        if precision not in PRECISIONS:
            raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
        if precision != "fp32" and not on_gpu():
            logger.warning(
                "precision=%s needs a GPU; paddle.amp has no effect on %s, training in fp32",
                precision,
                paddle.get_device(),
            )
            return cls("fp32", level)
        scaler = paddle.amp.GradScaler(init_loss_scaling=1024) if precision == "fp16" else None
        return cls(precision, level, scaler)

    def autocast(self) -> ContextManager:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return paddle.amp.auto_cast(
            enable=True,
            level=self.level,
            dtype="float16" if self.precision == "fp16" else "bfloat16",
            custom_black_list={"bilinear_interp_v2", "softmax_with_cross_entropy"},
        )
