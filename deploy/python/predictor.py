"""Predictors over an export directory (``tools/export.py`` output): Paddle Inference, ONNX
Runtime and OpenVINO, all with the same pre/post-processing (``_MaskPredictor``).

Depends only on the exported artefacts (``deploy.yaml``, ``model.json``, ``model.pdiparams``,
``model.onnx``), the runtime (``paddle.inference``, ``onnxruntime`` or ``openvino``, imported
lazily), NumPy, OpenCV and PyYAML -- never on the training code -- so a production image needs
neither ``paddle_stdc`` nor PaddleSeg. deploy.yaml is read and checked by :mod:`deploy.schema`.
Which class runs a (backend, precision, device) is decided in :mod:`deploy.python.backends`.

``predict`` returns what evaluation (``tools/val.py``) predicts: preprocessing follows the
val datasets (uint8 resize/padding, then ``Normalize``), ``eval_scale`` is inside the graph,
paddings are cropped off, and resizes are undone on the graph's scores (bilinear, before the
argmax) when the graph outputs scores -- which exports with a val ``Resize`` do. ``run``
returns the graph's raw output (``Deploy.output_op``: argmax (N, H, W) int32, softmax or none
(N, K, H, W) float32) and checks a fixed ``Deploy.input_shape``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np

from deploy.schema import REQUIRED_KEYS, DeployConfigError, read_deploy

__all__ = [
    "REQUIRED_KEYS", "DeployConfigError", "InputShapeError", "load_deploy_config", "Prepared",
    "preprocess", "postprocess", "postprocess_scores", "RuntimeOptions", "paddle_config",
    "Predictor", "OnnxPredictor", "OpenVinoPredictor", "benchmark",
]  # fmt: skip

_INTERP = {"NEAREST": cv2.INTER_NEAREST, "LINEAR": cv2.INTER_LINEAR, "CUBIC": cv2.INTER_CUBIC,
           "AREA": cv2.INTER_AREA, "LANCZOS4": cv2.INTER_LANCZOS4}  # fmt: skip

#: Read and check ``export_dir/deploy.yaml`` (see :mod:`deploy.schema`).
load_deploy_config = read_deploy


class InputShapeError(ValueError):
    """An input's shape does not fit the export's fixed ``Deploy.input_shape``."""


@dataclass
class Prepared:
    """A preprocessed image (3, H, W) float32 and what to undo on its prediction."""

    tensor: np.ndarray
    undo: List[Tuple[str, Tuple[int, int]]] = field(default_factory=list)


def _normalize(img: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """(img / 255 - mean) / std in float32, computed as the training side's ``Normalize``."""
    channels = img.shape[2]
    std_arr, mean_arr = np.resize(np.asarray(std), channels), np.resize(np.asarray(mean), channels)
    scale = (1.0 / (255.0 * std_arr)).astype(np.float32)
    shift = (-mean_arr / std_arr).astype(np.float32)
    if channels == 3 and img.dtype in (np.uint8, np.float32):
        out = cv2.multiply(img, tuple(scale.tolist()) + (0,), dtype=cv2.CV_32F)
        return cv2.add(out, tuple(shift.tolist()) + (0,)).reshape(img.shape)
    return (img.astype(np.float32) / 255.0 - mean_arr) / std_arr


def _pad(img: np.ndarray, t: Dict[str, Any]) -> np.ndarray:
    w, h = t["target_size"]
    pad_h, pad_w = int(h) - img.shape[0], int(w) - img.shape[1]
    if pad_h < 0 or pad_w < 0:
        raise ValueError(
            f"image {img.shape[1]}x{img.shape[0]} is larger than the export's Padding "
            f"target_size {w}x{h} (deploy.yaml Deploy.transforms)"
        )
    value = float(t.get("im_padding_value", 127.5))
    return cv2.copyMakeBorder(img, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(value,) * 3)


def preprocess(image_bgr: np.ndarray, transforms: Sequence[Dict[str, Any]]) -> Prepared:
    """BGR uint8 (H, W, 3) -> normalized RGB (3, H, W) float32, as evaluation's val pipeline.

    Like the training side's val datasets, resizing and padding work on the uint8 image (the
    dataset skips PaddleSeg's float32 copy) and ``Normalize`` makes it float32, so the network
    sees the same tensor as ``tools/val.py`` and ``tools/predict.py`` (docs/evaluation.md).
    """
    img = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB)
    undo: List[Tuple[str, Tuple[int, int]]] = []
    for t in transforms:
        kind = t["type"]
        if kind == "Normalize":
            img = _normalize(img, t["mean"], t["std"])
        elif kind == "Resize":
            undo.append(("resize", img.shape[:2]))
            w, h = t["target_size"]
            interp = _INTERP[t.get("interp", "LINEAR")]
            img = cv2.resize(img, (int(w), int(h)), interpolation=interp)
        elif kind == "Padding":
            undo.append(("padding", img.shape[:2]))
            img = _pad(img, t)
    return Prepared(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32), undo)


def postprocess(mask: np.ndarray, undo: Sequence[Tuple[str, Tuple[int, int]]]) -> np.ndarray:
    """Undo paddings and resizes on a class-id mask (H, W) (nearest: labels only).

    Exact for paddings; for resizes evaluation resizes logits instead (see
    :func:`postprocess_scores`), which is why exports with a val ``Resize`` output logits.
    """
    for kind, (h, w) in reversed(list(undo)):
        if kind == "padding":
            mask = mask[:h, :w]
        else:
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return mask


def _resize_scores(scores: np.ndarray, h: int, w: int) -> np.ndarray:
    """(K, h0, w0) -> (K, h, w) bilinear, half-pixel centres (Paddle's align_corners=False)."""
    hwc = np.ascontiguousarray(scores.transpose(1, 2, 0))
    chunks = [
        cv2.resize(hwc[:, :, i : i + 512], (w, h), interpolation=cv2.INTER_LINEAR)
        for i in range(0, hwc.shape[2], 512)  # OpenCV takes at most 512 channels
    ]
    out = np.concatenate([c.reshape(h, w, -1) for c in chunks], axis=2)
    return out.transpose(2, 0, 1)


def postprocess_scores(
    scores: np.ndarray, undo: Sequence[Tuple[str, Tuple[int, int]]]
) -> np.ndarray:
    """Undo paddings and resizes on scores (K, H, W) as evaluation does on logits, then argmax.

    Paddings are cropped off; resizes are undone bilinearly (align_corners=False), like
    ``paddle_stdc.engine.inference.reverse_transform``. Returns the class ids (H0, W0).
    """
    for kind, (h, w) in reversed(list(undo)):
        if kind == "padding":
            scores = scores[:, :h, :w]
        elif scores.shape[1:] != (h, w):
            scores = _resize_scores(scores, h, w)
    return scores.argmax(axis=0)


def check_input_shape(batch_shape: Sequence[int], deploy: Dict[str, Any], where: str) -> None:
    """Raise InputShapeError naming both shapes if ``batch_shape`` misses a fixed dimension."""
    fixed = deploy["input_shape"]
    if len(batch_shape) != 4 or any(f > 0 and f != s for f, s in zip(fixed, batch_shape)):
        raise InputShapeError(
            f"input of shape {list(batch_shape)} (N, C, H, W) does not match the fixed "
            f"input_shape {list(fixed)} of {where} (Deploy.input_shape; -1 = any): resize the "
            "images to that size, or export without --input_shape"
        )


@dataclass
class RuntimeOptions:
    """How Paddle Inference runs the model (the flags of ``deploy/python/infer.py``)."""

    device: str = "cpu"
    cpu_threads: int = 2
    enable_mkldnn: bool = True
    use_trt: bool = False
    precision: str = "fp32"
    min_shape: Optional[Sequence[int]] = None
    opt_shape: Optional[Sequence[int]] = None
    max_shape: Optional[Sequence[int]] = None
    shape_range_file: Optional[str] = None
    #: Paddle Inference records each tensor's shape range into this file (the first pass of
    #: PaddleSeg's --enable_auto_tune; a later run passes it as ``shape_range_file``).
    collect_shape_range_file: Optional[str] = None
    #: smallest subgraph TensorRT takes over (PaddleSeg's --min_subgraph_size)
    min_subgraph_size: int = 3
    gpu_mem_mb: int = 500
    #: CPU pass fixes for Paddle 3.3 (see paddle_config); False = Paddle's default passes.
    cpu_pass_fixes: bool = True
    #: Paddle's per-operator timing report, printed when the predictor is released.
    profile: bool = False
    #: ONNX Runtime: worker threads busy-wait between parallel sections (its default); serving
    #: turns it off, its replicas share their cores with the HTTP stack.
    ort_spinning: bool = True


def paddle_config(export_dir: Path, deploy: Dict[str, Any], opts: RuntimeOptions):
    """A ``paddle.inference.Config`` for the options (imports paddle.inference lazily)."""
    import paddle.inference as pi

    cfg = pi.Config(str(export_dir / deploy["model"]), str(export_dir / deploy["params"]))
    if opts.device == "gpu":
        cfg.enable_use_gpu(opts.gpu_mem_mb, 0)
        if opts.use_trt:
            _enable_trt(cfg, pi, opts)
    else:
        cfg.disable_gpu()
        cfg.set_cpu_math_library_num_threads(opts.cpu_threads)
        if opts.enable_mkldnn:
            cfg.enable_onednn()
            if opts.precision == "bf16":
                cfg.enable_onednn_bfloat16()
        else:
            cfg.disable_onednn()
        if opts.cpu_pass_fixes:
            # Paddle 3.3's PIR oneDNN interpolate kernels fail on ArrayAttribute<double>
            # ("ConvertPirAttribute2RuntimeAttribute not support"); without the placement
            # pass the fused oneDNN passes still apply and interpolation runs on CPU kernels.
            cfg.delete_pass("onednn_placement_pass")
            # transfer_layout_pass wraps pool2d in NCHW<->NHWC transposes for the NHWC
            # kernel; on CPU that made BiSeNetV1's stem max pool ~100 ms instead of ~9 ms.
            cfg.delete_pass("transfer_layout_pass")
    if opts.collect_shape_range_file:
        cfg.collect_shape_range_info(opts.collect_shape_range_file)
    if opts.profile:
        cfg.enable_profile()
    cfg.disable_glog_info()
    return cfg


def _enable_trt(cfg, pi, opts: RuntimeOptions) -> None:
    precision = {"fp32": pi.PrecisionType.Float32, "fp16": pi.PrecisionType.Half,
                 "int8": pi.PrecisionType.Int8}[opts.precision]  # fmt: skip
    cfg.enable_tensorrt_engine(
        workspace_size=1 << 30, max_batch_size=1, min_subgraph_size=opts.min_subgraph_size,
        precision_mode=precision, use_static=False, use_calib_mode=opts.precision == "int8",
    )  # fmt: skip
    if opts.shape_range_file:
        cfg.enable_tuned_tensorrt_dynamic_shape(opts.shape_range_file, True)
    elif opts.min_shape and opts.opt_shape and opts.max_shape:
        cfg.set_trt_dynamic_shape_info(
            {"x": list(opts.min_shape)}, {"x": list(opts.max_shape)}, {"x": list(opts.opt_shape)}
        )


class _MaskPredictor:
    """Shared pre/post-processing: subclasses implement ``_forward`` on a float32 batch.

    ``backend`` and ``precision`` name what runs the graph (set by the subclass).
    """

    export_dir: Path
    deploy: Dict[str, Any]
    backend: str = ""
    precision: str = "fp32"

    def _forward(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw graph output for an (N, 3, H, W) float32 batch (see ``Deploy.output_op``).

        A batch that does not fit a fixed ``Deploy.input_shape`` is an InputShapeError
        naming both shapes (instead of the runtime's broadcast error).
        """
        check_input_shape(batch.shape, self.deploy, f"the export in {self.export_dir}")
        return self._forward(batch)

    def _to_masks(self, out: np.ndarray, undos: Sequence[Sequence]) -> List[np.ndarray]:
        """Class ids at image size per sample: argmax outputs are cropped/resized as masks,
        scores (softmax or logits) are cropped/resized as evaluation does, then argmaxed."""
        if out.ndim == 3:  # the export's argmax output op, (N, H, W)
            return [postprocess(m.astype(np.int32), u) for m, u in zip(out, undos)]
        return [postprocess_scores(s, u) for s, u in zip(out, undos)]

    def prepare(self, images: Sequence[np.ndarray]) -> List[Prepared]:
        """The export's preprocessing of BGR images (another thread may run it, e.g. video's
        reader, while the network runs)."""
        return [preprocess(img, self.deploy["transforms"]) for img in images]

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 1) -> List[np.ndarray]:
        """Class-id masks (H, W) uint8 for BGR images; same-size images are batched."""
        return self.predict_prepared(self.prepare(images), batch_size)

    def predict_prepared(
        self, prepared: Sequence[Prepared], batch_size: int = 1
    ) -> List[np.ndarray]:
        """:meth:`predict` after :meth:`prepare`: run the network, undo the preprocessing."""
        masks: List[Optional[np.ndarray]] = [None] * len(prepared)
        order = sorted(range(len(prepared)), key=lambda i: prepared[i].tensor.shape)
        start = 0
        while start < len(order):
            shape = prepared[order[start]].tensor.shape
            group = [order[start]]
            while (len(group) < batch_size and start + len(group) < len(order)
                   and prepared[order[start + len(group)]].tensor.shape == shape):  # fmt: skip
                group.append(order[start + len(group)])
            out = self.run(np.stack([prepared[i].tensor for i in group]))
            for idx, mask in zip(group, self._to_masks(out, [prepared[i].undo for i in group])):
                masks[idx] = mask.astype(np.uint8)
            start += len(group)
        return masks  # type: ignore[return-value]


class Predictor(_MaskPredictor):
    """Runs an exported model with Paddle Inference; returns class-id masks at image size."""

    backend = "paddle"

    def __init__(self, export_dir: str | Path, options: Optional[RuntimeOptions] = None) -> None:
        import paddle.inference as pi

        self.export_dir = Path(export_dir)
        self.deploy = load_deploy_config(self.export_dir)
        self.options = options or RuntimeOptions()
        self.precision = self.options.precision
        self._predictor = pi.create_predictor(
            paddle_config(self.export_dir, self.deploy, self.options)
        )
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output_name = self._predictor.get_output_names()[0]

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        self._predictor.run()
        return self._predictor.get_output_handle(self._output_name).copy_to_cpu()


class OnnxPredictor(_MaskPredictor):
    """The same export run by ONNX Runtime: ``model.onnx`` (fp32) or ``model_int8.onnx``.

    ``precision="int8"`` needs ``deploy/python/quantize.py`` to have written the INT8 model.
    ``spin=False`` lets the worker threads sleep between parallel sections instead of
    busy-waiting (ONNX Runtime's default): for a process that shares its cores with other
    work, such as a serving replica next to its HTTP stack.
    """

    backend = "onnxruntime"
    FILES = {"fp32": "onnx", "int8": "onnx_int8"}

    def __init__(
        self, export_dir: str | Path, precision: str = "fp32", threads: int = 2, spin: bool = True
    ) -> None:
        import onnxruntime as ort

        self.export_dir = Path(export_dir)
        self.deploy = load_deploy_config(self.export_dir)
        self.precision = precision
        key = _model_key(self.export_dir, self.deploy, self.FILES, "ONNX Runtime", precision)
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        if not spin:
            so.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            str(self.export_dir / self.deploy[key]), so, providers=["CPUExecutionProvider"]
        )
        self._input_name = self._session.get_inputs()[0].name

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        feed = {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        return self._session.run(None, feed)[0]


class OpenVinoPredictor(_MaskPredictor):
    """The same export run by OpenVINO on CPU: ``model.onnx`` (fp32, or bf16 by OpenVINO's
    ``INFERENCE_PRECISION_HINT``) or the NNCF INT8 IR ``Deploy.openvino_int8``.

    OpenVINO reads ONNX, not Paddle's PIR ``model.json``. ``threads`` becomes
    ``INFERENCE_NUM_THREADS``; the LATENCY hint suits batch-1 requests. fp32 sets
    ``INFERENCE_PRECISION_HINT: f32`` explicitly: OpenVINO's own default is bf16 on CPUs with
    native bf16 (AVX512_BF16/AMX; this Zen 4 included). INT8 keeps that default for the layers
    it leaves in float (bf16 where native, else f32), as NNCF's measurements assume.
    """

    backend = "openvino"
    FILES = {"fp32": "onnx", "bf16": "onnx", "int8": "openvino_int8"}

    def __init__(self, export_dir: str | Path, precision: str = "fp32", threads: int = 2) -> None:
        import openvino as ov

        self.export_dir = Path(export_dir)
        self.deploy = load_deploy_config(self.export_dir)
        self.precision = precision
        key = _model_key(self.export_dir, self.deploy, self.FILES, "OpenVINO", precision)
        core = ov.Core()
        path = self.export_dir / self.deploy[key]
        # ONNX through convert_model (BatchNorms folded, as quantize.py's INT8 model was made)
        model = ov.convert_model(str(path)) if path.suffix == ".onnx" else core.read_model(path)
        config: Dict[str, Any] = {
            "PERFORMANCE_HINT": "LATENCY",
            "INFERENCE_NUM_THREADS": int(threads),
        }
        if precision != "int8":
            config["INFERENCE_PRECISION_HINT"] = "bf16" if precision == "bf16" else "f32"
        self._compiled = core.compile_model(model, "CPU", config)
        self._request = self._compiled.create_infer_request()
        self._lock = threading.Lock()  # one infer request: one call at a time

    def _forward(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            out = self._request.infer({0: np.ascontiguousarray(batch, dtype=np.float32)})
            return np.array(out[0])  # a copy: the request reuses its output buffer


def _model_key(
    export_dir: Path, deploy: Dict[str, Any], files: Dict[str, str], runtime: str, precision: str
) -> str:
    """The deploy.yaml key of the model file ``runtime`` reads for ``precision``; a missing one
    is a DeployConfigError saying how to make it."""
    key = files.get(precision)
    if key is None:
        raise ValueError(f"{runtime} precision {precision!r}: use {' or '.join(files)}")
    if not deploy.get(key):
        hints = {"onnx": "export with --format onnx",
                 "onnx_int8": "run deploy/python/quantize.py on this export first",
                 "openvino_int8": "run deploy/python/quantize.py --backend openvino on this "
                                  "export first"}  # fmt: skip
        raise DeployConfigError(f"{export_dir / 'deploy.yaml'}: no Deploy.{key}; {hints[key]}")
    return key


def benchmark(
    predictor: _MaskPredictor, shape: Sequence[int], warmup: int = 3, repeats: int = 10
) -> Dict:
    """Latency of ``predictor.run`` on a fixed random input: median, p90 (ms) and FPS."""
    x = np.random.RandomState(0).uniform(-1, 1, list(shape)).astype(np.float32)
    for _ in range(warmup):
        predictor.run(x)
    times = []
    for _ in range(repeats):
        tic = time.perf_counter()
        predictor.run(x)
        times.append(time.perf_counter() - tic)
    median = float(np.median(times))
    return {
        "shape": list(shape),
        "latency_ms_median": round(median * 1000, 2),
        "latency_ms_p90": round(float(np.percentile(times, 90)) * 1000, 2),
        "fps": round(shape[0] / median, 2),
        "repeats": repeats,
    }
