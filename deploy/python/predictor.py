"""Paddle Inference predictor over an export directory (``tools/export.py`` output).

Depends only on the exported artefacts (``deploy.yaml``, ``model.json``, ``model.pdiparams``),
``paddle.inference``, NumPy, OpenCV and PyYAML -- never on the training code -- so a
production image needs neither ``paddle_stdc`` nor PaddleSeg.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import cv2
import numpy as np
import yaml

REQUIRED_KEYS = ("model", "params", "transforms", "input_shape", "output_op", "output_dtype")
_INTERP = {"NEAREST": cv2.INTER_NEAREST, "LINEAR": cv2.INTER_LINEAR, "CUBIC": cv2.INTER_CUBIC,
           "AREA": cv2.INTER_AREA, "LANCZOS4": cv2.INTER_LANCZOS4}  # fmt: skip
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def list_images(path: Path) -> List[Path]:
    """``path`` itself, or the images under the folder ``path`` (sorted, recursive)."""
    if path.is_file():
        return [path]
    images = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    if not images:
        raise SystemExit(f"no images under {path}")
    return images


class DeployConfigError(ValueError):
    """deploy.yaml is missing, malformed, or names files that do not exist."""


def load_deploy_config(export_dir: str | Path) -> Dict[str, Any]:
    """Read and check ``export_dir/deploy.yaml``; errors name the file and the key."""
    path = Path(export_dir) / "deploy.yaml"
    if not path.is_file():
        raise DeployConfigError(f"{path} not found: point at a tools/export.py output folder")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DeployConfigError(f"{path} is not valid YAML: {err}") from err
    deploy = (doc or {}).get("Deploy")
    if not isinstance(deploy, dict):
        raise DeployConfigError(f"{path} has no `Deploy` mapping")
    for key in REQUIRED_KEYS:
        if key not in deploy:
            raise DeployConfigError(f"{path}: key Deploy.{key} is missing")
    if deploy["output_op"] not in ("argmax", "softmax", "none"):
        raise DeployConfigError(f"{path}: Deploy.output_op {deploy['output_op']!r} is unknown")
    for key in ("model", "params", "onnx", "onnx_int8"):
        if (key in ("model", "params") or deploy.get(key)) and not (
            Path(export_dir) / deploy[key]
        ).is_file():
            raise DeployConfigError(f"{path}: Deploy.{key} file {deploy[key]} does not exist")
    for t in deploy["transforms"]:
        if t.get("type") not in ("Normalize", "Resize", "Padding"):
            raise DeployConfigError(f"{path}: transform {t.get('type')!r} is not supported")
    return deploy


@dataclass
class Prepared:
    """A preprocessed image (3, H, W) float32 and what to undo on its mask."""

    tensor: np.ndarray
    undo: List[Tuple[str, Tuple[int, int]]] = field(default_factory=list)


def preprocess(image_bgr: np.ndarray, transforms: Sequence[Dict[str, Any]]) -> Prepared:
    """BGR uint8 (H, W, 3) -> normalized RGB CHW float32, as PaddleSeg's val transforms."""
    img = cv2.cvtColor(image_bgr, cv2.COLOR_BGR2RGB).astype(np.float32)
    undo: List[Tuple[str, Tuple[int, int]]] = []
    for t in transforms:
        kind = t["type"]
        if kind == "Normalize":
            img = (img / 255.0 - np.asarray(t["mean"], np.float32)) / np.asarray(
                t["std"], np.float32
            )
        elif kind == "Resize":
            undo.append(("resize", img.shape[:2]))
            w, h = t["target_size"]
            img = cv2.resize(
                img, (int(w), int(h)), interpolation=_INTERP[t.get("interp", "LINEAR")]
            )
        elif kind == "Padding":
            undo.append(("padding", img.shape[:2]))
            w, h = t["target_size"]
            pad_h, pad_w = int(h) - img.shape[0], int(w) - img.shape[1]
            if pad_h < 0 or pad_w < 0:
                raise ValueError(
                    f"image {img.shape[1]}x{img.shape[0]} is larger than Padding {w}x{h}"
                )
            value = float(t.get("im_padding_value", 127.5))
            img = cv2.copyMakeBorder(
                img, 0, pad_h, 0, pad_w, cv2.BORDER_CONSTANT, value=(value,) * 3
            )
    return Prepared(np.ascontiguousarray(img.transpose(2, 0, 1), dtype=np.float32), undo)


def postprocess(mask: np.ndarray, undo: Sequence[Tuple[str, Tuple[int, int]]]) -> np.ndarray:
    """Undo paddings and resizes on a class-id mask (H, W)."""
    for kind, (h, w) in reversed(list(undo)):
        if kind == "padding":
            mask = mask[:h, :w]
        else:
            mask = cv2.resize(mask, (w, h), interpolation=cv2.INTER_NEAREST)
    return mask


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
    gpu_mem_mb: int = 500
    #: CPU pass fixes for Paddle 3.3 (see paddle_config); False = Paddle's default passes.
    cpu_pass_fixes: bool = True
    #: Paddle's per-operator timing report, printed when the predictor is released.
    profile: bool = False


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
    if opts.profile:
        cfg.enable_profile()
    cfg.disable_glog_info()
    return cfg


def _enable_trt(cfg, pi, opts: RuntimeOptions) -> None:
    precision = {"fp32": pi.PrecisionType.Float32, "fp16": pi.PrecisionType.Half,
                 "int8": pi.PrecisionType.Int8}[opts.precision]  # fmt: skip
    cfg.enable_tensorrt_engine(
        workspace_size=1 << 30, max_batch_size=1, min_subgraph_size=3,
        precision_mode=precision, use_static=False, use_calib_mode=opts.precision == "int8",
    )  # fmt: skip
    if opts.shape_range_file:
        cfg.enable_tuned_tensorrt_dynamic_shape(opts.shape_range_file, True)
    elif opts.min_shape and opts.opt_shape and opts.max_shape:
        cfg.set_trt_dynamic_shape_info(
            {"x": list(opts.min_shape)}, {"x": list(opts.max_shape)}, {"x": list(opts.opt_shape)}
        )


class _MaskPredictor:
    """Shared pre/post-processing: subclasses only implement ``run`` on a float32 batch."""

    export_dir: Path
    deploy: Dict[str, Any]

    def run(self, batch: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def _masks(self, out: np.ndarray) -> np.ndarray:
        if out.ndim == 3:  # the export's argmax output op, (N, H, W)
            return out.astype(np.int32)
        return out.argmax(axis=1).astype(np.int32)

    def predict(self, images: Sequence[np.ndarray], batch_size: int = 1) -> List[np.ndarray]:
        """Class-id masks (H, W) uint8 for BGR images; same-size images are batched."""
        prepared = [preprocess(img, self.deploy["transforms"]) for img in images]
        masks: List[Optional[np.ndarray]] = [None] * len(prepared)
        order = sorted(range(len(prepared)), key=lambda i: prepared[i].tensor.shape)
        start = 0
        while start < len(order):
            shape = prepared[order[start]].tensor.shape
            group = [order[start]]
            while (len(group) < batch_size and start + len(group) < len(order)
                   and prepared[order[start + len(group)]].tensor.shape == shape):  # fmt: skip
                group.append(order[start + len(group)])
            out = self._masks(self.run(np.stack([prepared[i].tensor for i in group])))
            for k, idx in enumerate(group):
                masks[idx] = postprocess(out[k], prepared[idx].undo).astype(np.uint8)
            start += len(group)
        return masks  # type: ignore[return-value]


class Predictor(_MaskPredictor):
    """Runs an exported model with Paddle Inference; returns class-id masks at image size."""

    def __init__(self, export_dir: str | Path, options: Optional[RuntimeOptions] = None) -> None:
        import paddle.inference as pi

        self.export_dir = Path(export_dir)
        self.deploy = load_deploy_config(self.export_dir)
        self.options = options or RuntimeOptions()
        self._predictor = pi.create_predictor(
            paddle_config(self.export_dir, self.deploy, self.options)
        )
        self._input = self._predictor.get_input_handle(self._predictor.get_input_names()[0])
        self._output_name = self._predictor.get_output_names()[0]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw network output for an (N, 3, H, W) float32 batch."""
        self._input.reshape(list(batch.shape))
        self._input.copy_from_cpu(np.ascontiguousarray(batch, dtype=np.float32))
        self._predictor.run()
        return self._predictor.get_output_handle(self._output_name).copy_to_cpu()


class OnnxPredictor(_MaskPredictor):
    """The same export run by ONNX Runtime: ``model.onnx`` (fp32) or ``model_int8.onnx``.

    ``precision="int8"`` needs ``deploy/python/quantize.py`` to have written the INT8 model.
    """

    def __init__(self, export_dir: str | Path, precision: str = "fp32", threads: int = 2) -> None:
        import onnxruntime as ort

        self.export_dir = Path(export_dir)
        self.deploy = load_deploy_config(self.export_dir)
        key = {"fp32": "onnx", "int8": "onnx_int8"}.get(precision)
        if key is None:
            raise ValueError(f"ONNX Runtime precision {precision!r}: use fp32 or int8")
        if not self.deploy.get(key):
            hint = ("export with --format onnx" if key == "onnx"
                    else "run deploy/python/quantize.py on this export first")  # fmt: skip
            raise DeployConfigError(f"{self.export_dir / 'deploy.yaml'}: no Deploy.{key}; {hint}")
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self._session = ort.InferenceSession(
            str(self.export_dir / self.deploy[key]), so, providers=["CPUExecutionProvider"]
        )
        self._input_name = self._session.get_inputs()[0].name

    def run(self, batch: np.ndarray) -> np.ndarray:
        """Raw network output for an (N, 3, H, W) float32 batch."""
        feed = {self._input_name: np.ascontiguousarray(batch, dtype=np.float32)}
        return self._session.run(None, feed)[0]


def benchmark(
    predictor: Predictor, shape: Sequence[int], warmup: int = 3, repeats: int = 10
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
