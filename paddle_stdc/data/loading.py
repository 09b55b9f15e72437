"""Training and evaluation data loading, with errors that surface in the main process.

Training: :func:`build_train_loader` (an endless, resumable, seeded batch stream).
Evaluation: :func:`val_samples` (one sample at a time, this process's shard).

Loader errors surface in the main process with their message, instead of a hang:

Paddle 3.3's DataLoader hangs forever when a dataset raises with ``num_workers=0``, and with
worker processes it raises a generic ``SystemError`` ("Blocking queue is killed"). Here a
failing sample becomes an error record (the message as uint8 bytes, the one payload that
survives worker transport); :func:`raise_if_failed` turns a batch carrying it back into
:class:`~paddle_stdc.data.datasets.DataError` with the original text, file name included.
"""

from __future__ import annotations

import os
import random
import traceback
from typing import Any, Dict, Iterator, List, Tuple

import cv2
import numpy as np
import paddle
from paddle.io.dataloader.collate import default_collate_fn

from paddle_stdc.data.datasets import DataError, bad_label_values, shown_values

ERROR_KEY = "_load_error"


def single_thread_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: one thread for Paddle and OpenMP in a loader worker
    process, so that N workers do not each run the main process's thread count (the main
    process counts its workers, see :func:`paddle_stdc.engine.runtime.plan_cpu_threads`).

    OpenCV's thread count is left alone: ``cv2.setNumThreads`` in a forked child whose parent
    had started OpenCV's pool can deadlock (it hung the test suite here)."""
    os.environ["OMP_NUM_THREADS"] = "1"
    paddle.base.core.set_num_threads(1)


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


def check_batch_labels(labels: Any, num_classes: int, ignore_index: int, where: str) -> None:
    """Raise :class:`DataError` if a batch's labels hold a value outside ``[0, num_classes) ∪
    {ignore_index}`` (which Paddle's loss kernels report as ``OutOfRange``).

    For datasets that do not check their samples (ours do, naming the file): a bincount of
    the uint8 labels, about 6 ms for 4 x 1024 x 512 on one CPU core.
    """
    array = labels.numpy() if hasattr(labels, "numpy") else np.asarray(labels)
    bad = bad_label_values(array, num_classes, ignore_index)
    if bad:
        shown = shown_values(bad)
        raise DataError(
            f"{where}: label values {shown} outside [0, {num_classes}) and ignore_index "
            f"{ignore_index} (the dataset does not say which file; check num_classes, "
            "ignore_index and the transforms' label_padding_value)"
        )


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


class SeededDataset(paddle.io.Dataset):
    """Makes each sample's augmentation a pure function of (seed, epoch, index).

    The sampler passes "virtual" indices ``epoch * len(dataset) + index``; before loading a
    sample the global Python/NumPy RNGs (which PaddleSeg's transforms use) are seeded from
    the seed and that virtual index. Augmentations then do not depend on loader workers,
    prefetching or where a run was resumed.
    """

    def __init__(self, dataset: paddle.io.Dataset, seed: int) -> None:
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, virtual_index: int):
        sample_seed = (self.seed * 1_000_003 + int(virtual_index)) % 2**32
        np.random.seed(sample_seed)
        random.seed(sample_seed)
        return self.dataset[int(virtual_index) % len(self.dataset)]


class ResumableBatchSampler(paddle.io.BatchSampler):
    """An endless stream of batches of a ``DistributedBatchSampler`` that can start mid-epoch.

    Epoch ``e`` is shuffled with the sampler's own epoch seed, so the order of batches
    depends only on the global step; resuming at step ``s`` skips the first ``s`` batches
    without loading them. Yields virtual indices for :class:`SeededDataset`.
    """

    def __init__(self, dataset: paddle.io.Dataset, batch_size: int, start_step: int = 0) -> None:
        self.inner = paddle.io.DistributedBatchSampler(
            dataset, batch_size=batch_size, shuffle=True, drop_last=True
        )
        self.num_samples = len(dataset)
        self.steps_per_epoch = len(self.inner)
        if self.steps_per_epoch == 0:
            raise ValueError(
                f"the training set has {len(dataset)} samples, fewer than one batch "
                f"({batch_size} per process x {paddle.distributed.get_world_size()} processes)"
            )
        self.start_step = start_step

    def __iter__(self) -> Iterator[List[int]]:
        epoch, skip = divmod(self.start_step, self.steps_per_epoch)
        while True:
            self.inner.set_epoch(epoch)
            offset = epoch * self.num_samples
            for k, batch in enumerate(self.inner):
                if k >= skip:
                    yield [offset + i for i in batch]
            epoch, skip = epoch + 1, 0

    def __len__(self) -> int:
        return self.steps_per_epoch


def build_train_loader(
    dataset: paddle.io.Dataset,
    batch_size: int,
    num_workers: int,
    start_step: int = 0,
    seed: int = 0,
) -> paddle.io.DataLoader:
    """A DataLoader yielding batches forever from global step ``start_step`` on."""
    sampler = ResumableBatchSampler(dataset, batch_size, start_step)
    return paddle.io.DataLoader(
        # Loading errors travel as records and are re-raised by the loop (no DataLoader hang).
        SeededDataset(CapturingDataset(dataset), seed),
        batch_sampler=sampler,
        num_workers=num_workers,
        return_list=True,
        collate_fn=collate_or_error,
        worker_init_fn=single_thread_worker if num_workers > 0 else None,
    )


def val_samples(
    dataset: paddle.io.Dataset, indices: List[int], num_workers: int
) -> Iterator[Tuple[int, paddle.Tensor, np.ndarray, Any]]:
    """(dataset index, img (1, 3, H, W), label (H, W), trans_info) per sample.

    With ``num_workers == 0`` samples are read in this thread: Paddle 3's single-process
    DataLoader hangs forever when the dataset raises (e.g. an unreadable label file).
    Worker processes go through a DataLoader (loading errors re-raised here with their
    message, see :mod:`paddle_stdc.data.loading`), whose collated trans_info
    :func:`~paddle_stdc.engine.inference.reverse_transform` also reads.
    """
    if num_workers <= 0:
        for index in indices:
            data = dataset[index]
            if not isinstance(data, dict):
                raise TypeError(
                    f"expected PaddleSeg val-mode samples (dicts with 'img', 'label', "
                    f"'trans_info'), got {type(data).__name__}"
                )
            img = data["img"]
            img = img.unsqueeze(0) if hasattr(img, "unsqueeze") else paddle.to_tensor(img[None])
            yield index, img, _label_2d(data["label"]), data.get("trans_info")
        return
    subset = dataset if len(indices) == len(dataset) else paddle.io.Subset(dataset, indices)
    loader = paddle.io.DataLoader(
        CapturingDataset(subset), batch_size=1, shuffle=False, num_workers=num_workers,
        return_list=True, collate_fn=collate_or_error, worker_init_fn=single_thread_worker,
    )  # fmt: skip
    for index, data in zip(indices, loader):
        data = raise_if_failed(data)
        yield index, data["img"], _label_2d(data["label"]), data.get("trans_info")


def _label_2d(label: Any) -> np.ndarray:
    label = label.numpy() if hasattr(label, "numpy") else np.asarray(label)
    return label.reshape(label.shape[-2:]) if label.ndim > 2 else label
