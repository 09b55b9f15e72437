"""Segment a video file or a camera into an overlay video, decoding and encoding in threads.

Three stages joined by bounded queues: a reader thread decodes frames (and preprocesses them
when the predictor has ``prepare``, as the backend table's predictors do), the calling thread
runs the network (``predictor.predict_prepared``, or ``predictor.predict(frames, batch_size)``
for any object with only that method, e.g. a fake in tests), a writer thread blends the masks
into overlays and encodes them. OpenCV releases the GIL while decoding, resizing, blending and
encoding, so all of it overlaps inference: the calling thread does little but run the model.
An error in any stage or Ctrl-C stops all three: the threads are joined and the output file is
closed, never left hanging. The output has the input's frame size and frame rate (``mp4v`` in
``.mp4``).
"""

from __future__ import annotations

import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Union

import cv2
import numpy as np

from deploy.visual import full_palette
from deploy.visual import overlay as blend

FOURCC = "mp4v"
DEFAULT_FPS = 30.0  # cameras often report 0 frames per second
_END = object()  # end-of-stream marker on the queues
_POLL_S = 0.1


class VideoError(RuntimeError):
    """The video source cannot be opened or decoded, or the output cannot be written."""


@dataclass
class VideoStats:
    """What :func:`segment_video` did: frames, their size and rate, and the timings."""

    output: Path
    frames: int = 0
    width: int = 0
    height: int = 0
    fps_in: float = 0.0
    latencies_ms: List[float] = field(default_factory=list)
    wall_s: float = 0.0
    interrupted: bool = False

    @property
    def fps(self) -> float:
        """End-to-end frames per second: decoding, inference and encoding, all frames."""
        return self.frames / self.wall_s if self.wall_s > 0 else 0.0

    def summary(self) -> str:
        """One line: frame count, size, median inference latency and end-to-end FPS."""
        median = float(np.median(self.latencies_ms)) if self.latencies_ms else 0.0
        state = " (interrupted)" if self.interrupted else ""
        return (
            f"video: {self.frames} frames {self.width}x{self.height} at {self.fps_in:g} fps"
            f"{state}, inference median {median:.1f} ms/frame, end-to-end FPS {self.fps:.2f} "
            f"-> {self.output}"
        )


def palette_array(deploy: Dict[str, Any]) -> np.ndarray:
    """(256, 3) uint8 RGB colours: deploy.yaml's palette, else fixed pseudo-random colours."""
    if deploy.get("palette"):
        return full_palette(deploy["palette"])
    return np.random.RandomState(0).randint(0, 255, (256, 3)).astype(np.uint8)


def overlay(image_bgr: np.ndarray, mask: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """The image blended with the mask's palette colours (40% image, 60% colour), BGR uint8."""
    return blend(image_bgr, mask, palette, weight=0.6)


def check_source(source: Union[str, int]) -> None:
    """Fail early (VideoError) if ``source`` is neither a camera index nor an existing file."""
    text = str(source)
    if not text.isdigit() and not Path(text).is_file():
        raise VideoError(f"--video_path {text}: no such file (or give a camera index)")


def open_source(source: Union[str, int]) -> cv2.VideoCapture:
    """A VideoCapture for a file path or a camera index (``"0"``); VideoError names the source."""
    check_source(source)
    text = str(source)
    if text.isdigit():
        cap = cv2.VideoCapture(int(text))
        what = f"camera {text}"
    else:
        cap = cv2.VideoCapture(text)
        what = text
    if not cap.isOpened():
        cap.release()
        raise VideoError(f"--video_path {what}: OpenCV cannot open it as a video")
    return cap


def output_path(source: Union[str, int], save_dir: Union[str, Path]) -> Path:
    """``save_dir/<name>_overlay.mp4``; cameras are named ``camera<N>``."""
    text = str(source)
    stem = f"camera{text}" if text.isdigit() else Path(text).stem
    return Path(save_dir) / f"{stem}_overlay.mp4"


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put unless ``stop`` is set first; False if the pipeline stopped."""
    while not stop.is_set():
        try:
            q.put(item, timeout=_POLL_S)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    """Next item, or ``_END`` once ``stop`` is set."""
    while not stop.is_set():
        try:
            return q.get(timeout=_POLL_S)
        except queue.Empty:
            continue
    return _END


class _Stage(threading.Thread):
    """A daemon thread that records its exception and stops the pipeline on error."""

    def __init__(self, name: str, target: Callable[[], None], stop: threading.Event) -> None:
        super().__init__(name=name, daemon=True)
        self._work, self._stop_event, self.error = target, stop, None

    def run(self) -> None:
        try:
            self._work()
        except BaseException as err:  # noqa: BLE001 - re-raised in the calling thread
            self.error = err
            self._stop_event.set()


def _reader(
    cap, first: np.ndarray, frames: queue.Queue, stop: threading.Event,
    prepare: Optional[Callable[[List[np.ndarray]], List[Any]]] = None,
) -> Callable:  # fmt: skip
    """Decode frames; queue (frame, its preprocessed tensor or None)."""

    def work() -> None:
        frame: Optional[np.ndarray] = first
        while frame is not None:
            item = (frame, prepare([frame])[0] if prepare is not None else None)
            if not _put(frames, item, stop):
                break
            ok, frame = cap.read()
            frame = frame if ok else None
        _put(frames, _END, stop)

    return work


def _writer(writer, out: queue.Queue, stop: threading.Event, palette: np.ndarray) -> Callable:
    """Blend each (frame, mask) into an overlay and encode it."""

    def work() -> None:
        while True:
            item = _get(out, stop)
            if item is _END:
                return
            frame, mask = item
            writer.write(overlay(frame, mask, palette))

    return work


def _next_batch(frames: queue.Queue, size: int, stop: threading.Event) -> List[np.ndarray]:
    """Up to ``size`` frames; fewer at the end of the stream, none once it has ended."""
    batch: List[np.ndarray] = []
    while len(batch) < size:
        item = _get(frames, stop)
        if item is _END:
            frames.put_nowait(_END)  # keep the end visible to the next call
            break
        batch.append(item)
    return batch


def _open_writer(path: Path, fps: float, size: Sequence[int]) -> cv2.VideoWriter:
    path.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*FOURCC), fps, tuple(size))
    if not writer.isOpened():
        raise VideoError(f"cannot write {path} with OpenCV's {FOURCC!r} encoder")
    return writer


def segment_video(
    predictor: Any,
    source: Union[str, int],
    save_dir: Union[str, Path],
    palette: np.ndarray,
    batch_size: int = 1,
    queue_size: int = 8,
    log: Optional[Callable[[str], None]] = print,
) -> VideoStats:
    """Write ``save_dir/<name>_overlay.mp4`` for a video file or camera index.

    ``predictor.predict(list_of_bgr_frames, batch_size)`` returns one class-id mask per frame.
    ``log`` gets one line per frame (its inference latency); the caller prints the summary.
    Ctrl-C ends the video early (``stats.interrupted``); other errors are re-raised after the
    threads stopped and the output was closed.
    """
    cap = open_source(source)
    ok, first = cap.read()
    if not ok or first is None:
        cap.release()
        raise VideoError(f"--video_path {source}: no frame could be decoded")
    fps = cap.get(cv2.CAP_PROP_FPS)
    fps = fps if fps and np.isfinite(fps) and fps > 0 else DEFAULT_FPS
    height, width = first.shape[:2]
    stats = VideoStats(output_path(source, save_dir), width=width, height=height, fps_in=fps)
    try:
        writer = _open_writer(stats.output, fps, (width, height))
    except VideoError:
        cap.release()
        raise
    stop = threading.Event()
    frames: queue.Queue = queue.Queue(maxsize=queue_size)
    out: queue.Queue = queue.Queue(maxsize=queue_size)
    prepare = getattr(predictor, "prepare", None)
    if not hasattr(predictor, "predict_prepared"):
        prepare = None
    stages = [_Stage("video-reader", _reader(cap, first, frames, stop, prepare), stop),
              _Stage("video-writer", _writer(writer, out, stop, palette), stop)]  # fmt: skip
    start = time.perf_counter()
    for stage in stages:
        stage.start()
    try:
        try:
            _infer_loop(predictor, frames, out, stop, max(1, batch_size), stats, log)
        except KeyboardInterrupt:
            stats.interrupted = True
        _put(out, _END, stop)
        stages[1].join()  # the writer drains what is queued (also after Ctrl-C)
    finally:
        stop.set()
        for stage in stages:
            stage.join(timeout=10)
        cap.release()
        writer.release()
        stats.wall_s = time.perf_counter() - start
    for stage in stages:
        if stage.error is not None:
            raise stage.error
    return stats


def _infer_loop(predictor, frames, out, stop, batch_size, stats, log) -> None:
    while not stop.is_set():
        batch = _next_batch(frames, batch_size, stop)
        if not batch:
            return
        images = [frame for frame, _ in batch]
        tic = time.perf_counter()
        if batch[0][1] is not None:  # preprocessed by the reader
            masks = predictor.predict_prepared([p for _, p in batch], batch_size)
        else:
            masks = predictor.predict(images, batch_size)
        per_frame = (time.perf_counter() - tic) * 1000 / len(batch)
        for frame, mask in zip(images, masks):
            if not _put(out, (frame, mask), stop):
                return
            stats.frames += 1
            stats.latencies_ms.append(per_frame)
            if log is not None:
                log(f"frame {stats.frames}: {per_frame:.1f} ms")
