"""The evaluation loop: confusion matrix over a val dataset under a named protocol.

Works with PaddleSeg datasets in ``mode='val'`` (dicts with ``img`` (3, H, W), ``label``
(1, H, W) and ``trans_info``). Multi-process runs evaluate disjoint shards (no padding or
duplicated samples) and sum the confusion matrices, so the result equals one process's.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass, field
from typing import Any, List, Optional, Tuple

import numpy as np
import paddle
import paddle.nn as nn

from paddle_stdc.engine.inference import EvalProtocol, infer_logits
from paddle_stdc.engine.logging import format_eta
from paddle_stdc.engine.metrics import SegMetrics, confusion_matrix
from paddle_stdc.engine.runtime import on_gpu

logger = logging.getLogger("paddle_stdc")


@dataclass
class EvalResult:
    """Metrics of one evaluation, the protocol that produced them, and a few predictions."""

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
        return (
            f"#Images: {self.num_samples} mIoU: {self.miou:.4f} Acc: {self.acc:.4f} "
            f"Kappa: {self.kappa:.4f} [{self.protocol}]"
        )


def _autocast(precision: str):
    if precision == "fp32" or not on_gpu():
        return contextlib.nullcontext()
    dtype = "float16" if precision == "fp16" else "bfloat16"
    return paddle.amp.auto_cast(enable=True, level="O1", dtype=dtype)


def _shard_loader(dataset: paddle.io.Dataset, num_workers: int) -> paddle.io.DataLoader:
    rank, world = paddle.distributed.get_rank(), paddle.distributed.get_world_size()
    if world > 1:
        dataset = paddle.io.Subset(dataset, list(range(rank, len(dataset), world)))
    return paddle.io.DataLoader(
        dataset, batch_size=1, shuffle=False, num_workers=num_workers, return_list=True
    )


def _all_reduce(cm: np.ndarray, count: int) -> Tuple[np.ndarray, int]:
    if paddle.distributed.get_world_size() <= 1:
        return cm, count
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
    print_detail: bool = True,
    **protocol_options: Any,
) -> EvalResult:
    """Evaluate ``model`` on ``dataset``.

    ``protocol_options`` are the fields of :class:`EvalProtocol` (PaddleSeg's ``test_config``
    keys: ``aug_eval``, ``scales``, ``flip_horizontal``, ``is_slide`` ..., plus ``eval_scale``).
    """
    num_classes = num_classes if num_classes is not None else dataset.num_classes
    ignore_index = ignore_index if ignore_index is not None else dataset.ignore_index
    protocol = EvalProtocol.from_dict(protocol_options)
    loader = _shard_loader(dataset, num_workers)
    total = len(loader)
    if precision != "fp32" and not on_gpu():
        logger.warning("precision=%s has no effect on CPU; evaluating in fp32", precision)
    if print_detail:
        logger.info("Start evaluating (%d samples, %s)...", len(dataset), protocol.describe())

    was_training = model.training
    model.eval()
    cm = np.zeros((num_classes, num_classes), dtype=np.int64)
    samples: List[Tuple[int, np.ndarray, np.ndarray]] = []
    start, count = time.time(), 0
    try:
        with paddle.no_grad():
            for idx, data in enumerate(loader):
                with _autocast(precision):
                    logits = infer_logits(model, data["img"], data.get("trans_info"), protocol)
                pred = paddle.argmax(logits, axis=1).numpy()[0]
                label = data["label"].numpy().reshape(pred.shape)
                cm += confusion_matrix(pred, label, num_classes, ignore_index)
                count += 1
                if len(samples) < num_vis:
                    samples.append((idx, pred.astype(np.uint8), label))
                if print_detail and (idx + 1) % max(1, total // 10) == 0:
                    per_sample = (time.time() - start) / (idx + 1)
                    eta = format_eta(per_sample * (total - idx - 1))
                    logger.info(
                        "[EVAL] %d/%d, %.3f s/sample | ETA %s", idx + 1, total, per_sample, eta
                    )
    finally:
        if was_training:
            model.train()
    cm, count = _all_reduce(cm, count)
    result = EvalResult(SegMetrics.from_confusion(cm), cm, count, protocol.describe(), samples)
    if print_detail:
        logger.info("[EVAL] %s", result.summary())
    return result
