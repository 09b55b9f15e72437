"""The evaluation loop: a confusion matrix over a val dataset under a named protocol.

Works with PaddleSeg datasets in ``mode='val'`` (dicts with ``img`` (3, H, W), ``label``
(1, H, W) and ``trans_info``), read one sample at a time. Replaces PaddleSeg 2.8's
``core.evaluate``, which breaks on Paddle 3 (0-D tensor concat in ``calculate_area``).

Multi-process runs evaluate disjoint shards (indices ``rank::world_size``; no padded or
duplicated samples, unlike ``DistributedBatchSampler``) and sum the confusion matrices with
``all_reduce``, so the metrics equal a single-process evaluation exactly.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from paddle_stdc.data.loading import val_samples
from paddle_stdc.engine.inference import EvalProtocol, infer_logits
from paddle_stdc.engine.logging import format_eta
from paddle_stdc.engine.metrics import SegMetrics, confusion_matrix
from paddle_stdc.engine.runtime import AmpSettings, configure_cpu_threads

_LOGGER_NAME = "paddle_stdc"


@dataclass
class EvalResult:
    """Metrics of one evaluation, the protocol that produced them, and a few predictions.

    ``samples`` holds (dataset index, prediction uint8 (H, W), label (H, W)) of the first
    ``num_vis`` images this process evaluated (for VisualDL images).
    """

    metrics: SegMetrics
    confusion: np.ndarray
    num_samples: int
    protocol: str
    samples: List[Tuple[int, np.ndarray, np.ndarray]] = field(default_factory=list)

    @property
    def miou(self) -> float:
        return self.metrics.miou

    @property
    def acc(self) -> float:
        return self.metrics.acc

    @property
    def kappa(self) -> float:
        return self.metrics.kappa

    @property
    def class_iou(self) -> np.ndarray:
        return self.metrics.class_iou

    def summary(self) -> str:
        """One log line with the image count, the metrics and the protocol."""
        return f"#Images: {self.num_samples} {self.metrics.summary()} [{self.protocol}]"


def _shard(num_samples: int) -> Tuple[List[int], int, int]:
    """This process's dataset indices (rank::world_size), its rank and the world size."""
    world = paddle.distributed.get_world_size()
    if world <= 1:
        return list(range(num_samples)), 0, 1
    rank = paddle.distributed.get_rank()
    return list(range(rank, num_samples, world)), rank, world


def _sum_over_processes(cm: np.ndarray, count: int) -> Tuple[np.ndarray, int]:
    """Sum confusion matrices and sample counts of all processes (one int64 all_reduce)."""
    if not paddle.distributed.is_initialized():
        paddle.distributed.init_parallel_env()
    tensor = paddle.to_tensor(np.append(cm.reshape(-1), count).astype(np.int64))
    paddle.distributed.all_reduce(tensor)
    flat = tensor.numpy()
    return flat[:-1].reshape(cm.shape), int(flat[-1])


def evaluate(
    model: nn.Layer,
    dataset: paddle.io.Dataset,
    *,
    num_classes: Optional[int] = None,
    ignore_index: Optional[int] = None,
    precision: str = "fp32",
    num_workers: int = 0,
    num_vis: int = 0,
    cpu_threads: Optional[int] = None,
    print_detail: bool = True,
    logger: Optional[logging.Logger] = None,
    **protocol_options: Any,
) -> EvalResult:
    """Evaluate ``model`` on ``dataset`` (batch size 1) and return metrics with their protocol.

    ``protocol_options`` are the fields of :class:`EvalProtocol`: PaddleSeg's ``test_config``
    keys plus ``eval_scale`` (0.5/0.75 = the paper's Seg50/Seg75); see
    :func:`paddle_stdc.engine.inference.infer_logits`.
    ``num_classes``/``ignore_index`` default to the dataset's attributes. The model runs in
    eval mode without gradients; its train/eval mode is restored afterwards. On CPU it runs
    ``cpu_threads`` threads (default: the cores the process may use, less ``num_workers``;
    :func:`~paddle_stdc.engine.runtime.configure_cpu_threads`).
    """
    log = logger or logging.getLogger(_LOGGER_NAME)
    protocol = EvalProtocol(**protocol_options)  # TypeError names a misspelled option
    if num_classes is None:
        num_classes = getattr(dataset, "num_classes", None)
        if num_classes is None:
            raise ValueError("num_classes is required: the dataset has no `num_classes`")
    if ignore_index is None:
        ignore_index = getattr(dataset, "ignore_index", 255)
    label_text = protocol.describe()
    amp = AmpSettings.create(precision, training=False, log=log)  # validates first
    configure_cpu_threads(cpu_threads, num_workers, log=log)

    indices, rank, world = _shard(len(dataset))
    total = len(indices)
    verbose = print_detail and rank == 0
    if verbose:
        where = f" ({total} on this process of {world})" if world > 1 else ""
        log.info("[EVAL] Start evaluating %d samples%s, %s", len(dataset), where, label_text)

    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    samples: List[Tuple[int, np.ndarray, np.ndarray]] = []
    pred_dtype = np.uint8 if num_classes <= 256 else np.int32
    log_every = max(1, round(total / 10))
    was_training = model.training
    model.eval()
    start = time.time()
    done = 0
    try:
        with paddle.no_grad():
            for index, img, label, trans_info in val_samples(dataset, indices, num_workers):
                with amp.autocast():
                    logits = infer_logits(model, img, trans_info, protocol)
                pred = paddle.argmax(logits, axis=1).numpy()[0]
                cm += confusion_matrix(pred, label, num_classes, ignore_index)
                done += 1
                if len(samples) < num_vis:
                    samples.append((index, pred.astype(pred_dtype), label))
                if verbose and (done % log_every == 0 or done == total):
                    speed = done / max(time.time() - start, 1e-9)
                    log.info(
                        "[EVAL] %d/%d samples (%d%%), %.2f samples/s | ETA %s",
                        done,
                        total,
                        100 * done // total,
                        speed,
                        format_eta((total - done) / speed),
                    )
    finally:
        if was_training:
            model.train()
        else:
            model.eval()

    if world > 1:
        cm, done = _sum_over_processes(cm, done)
    result = EvalResult(SegMetrics.from_confusion(cm), cm, done, label_text, samples)
    if verbose:
        log.info("[EVAL] %s", result.summary())
    return result
