"""Loader errors that surface in the main process with their message, instead of a hang.

Paddle 3.3's DataLoader hangs forever when a dataset raises with ``num_workers=0``, and with
worker processes it raises a generic ``SystemError`` ("Blocking queue is killed"). Here a
failing sample becomes an error record (the message as uint8 bytes, the one payload that
survives worker transport); :func:`raise_if_failed` turns a batch carrying it back into
:class:`~paddle_stdc.data.datasets.DataError` with the original text, file name included.
"""

from __future__ import annotations

import traceback
from typing import Any, Dict, List

import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

from paddle_stdc.data.datasets import DataError

ERROR_KEY = "_load_error"


def error_record(err: BaseException) -> Dict[str, np.ndarray]:
    """A sample standing for ``err``: its type, message and the innermost frame."""
    frame = traceback.extract_tb(err.__traceback__)[-1] if err.__traceback__ else None
    where = f" (at {frame.filename}:{frame.lineno})" if frame else ""
    text = f"{type(err).__name__}: {err}{where}"
    return {ERROR_KEY: np.frombuffer(text.encode("utf-8"), np.uint8).copy()}


def collate_or_error(batch: List[Any]) -> Any:
    """PaddleSeg's default collation, or the first error record of the batch."""
    for sample in batch:
        if isinstance(sample, dict) and ERROR_KEY in sample:
            return sample
    try:
        return default_collate_fn(batch)
    except Exception as err:  # noqa: BLE001  (e.g. samples of different shapes)
        return error_record(err)


def raise_if_failed(batch: Any) -> Any:
    """Raise :class:`DataError` if ``batch`` is an error record, else return it."""
    if isinstance(batch, dict) and ERROR_KEY in batch:
        payload = batch[ERROR_KEY]
        payload = payload.numpy() if isinstance(payload, paddle.Tensor) else payload
        raise DataError(f"loading a sample failed: {bytes(np.asarray(payload, np.uint8)).decode()}")
    return batch


class CapturingDataset(paddle.io.Dataset):
    """Wraps a dataset so that an exception while loading becomes an error record."""

    def __init__(self, dataset: paddle.io.Dataset) -> None:
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> Any:
        try:
            return self.dataset[index]
        except Exception as err:  # noqa: BLE001  (re-raised in the main process)
            return error_record(err)
