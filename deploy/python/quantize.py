"""INT8 post-training quantization of an ONNX export, calibrated on a folder of images.

    python deploy/python/quantize.py --export_dir output/export --calib_dir images/ \
        [--num_images 32] [--backend onnxruntime|openvino] [--method minmax|entropy|percentile]

``--backend onnxruntime`` (default) writes ``model_int8.onnx`` (QDQ format: per-channel int8
weights, uint8 activations) next to ``model.onnx`` and records it as ``Deploy.onnx_int8``; it
runs in ONNX Runtime on CPU (``infer.py --backend onnxruntime --precision int8``) and is what
TensorRT's explicit quantization consumes. Needs ``onnxruntime`` and ``ml_dtypes<0.6``.

``--backend openvino`` quantizes ``model.onnx`` with NNCF (``nncf.quantize``: per-channel
weights, min-max activation ranges, fast bias correction; ``--preset``, ``--ignore_head``)
and writes the OpenVINO IR ``model_openvino_int8.xml`` + ``.bin``, recorded as
``Deploy.openvino_int8`` (deploy.yaml version 3); ``infer.py --backend openvino --precision
int8`` runs it. Needs ``pip install -e ".[openvino]"``.

Which file each backend's INT8 model is comes from :mod:`deploy.python.backends`' table. The
calibration images go through the export's own val transforms, so calibrate on images like the
ones you serve (a few dozen from the training set).
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np

try:
    from deploy.images import ImageListError, list_images
    from deploy.python import backends
    from deploy.python.predictor import preprocess
    from deploy.schema import SCHEMA_VERSION, DeployConfigError, read_deploy, update_deploy
except ModuleNotFoundError as _err:  # run as a file without `pip install -e .`
    raise SystemExit(f"quantize.py: error: {_err}; run `pip install -e .`") from None

METHODS = ("minmax", "entropy", "percentile")
INT8_FILE = "model_int8.onnx"
OPENVINO_INT8_FILE = "model_openvino_int8.xml"
PRESETS = ("performance", "mixed")


def calibration_batches(
    images: Sequence[Path], transforms: Sequence[Dict], input_name: str
) -> Iterator[Dict[str, np.ndarray]]:
    """One preprocessed (1, 3, H, W) feed per image; unreadable files are an error, by name."""
    for path in images:
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if image is None:
            raise ValueError(f"calibration image {path} cannot be read")
        yield {input_name: preprocess(image, transforms).tensor[None]}


def quantize_int8(
    export_dir: str | Path,
    calib_images: Sequence[Path],
    method: str = "minmax",
    out_name: str = INT8_FILE,
) -> Path:
    """Quantize ``export_dir``'s ONNX model to INT8 and register it in deploy.yaml."""
    import onnxruntime as ort
    from onnxruntime import quantization as q
    from onnxruntime.quantization.shape_inference import quant_pre_process

    ort.set_default_logger_severity(3)  # its per-initializer cleanup warnings are noise here
    export_dir = Path(export_dir)
    deploy = read_deploy(export_dir)
    if not deploy.get("onnx"):
        raise DeployConfigError(
            f"{export_dir / 'deploy.yaml'} has no Deploy.onnx: export with --format onnx first"
        )
    if method not in METHODS:
        raise ValueError(f"calibration method {method!r}: choose one of {METHODS}")
    if not calib_images:
        raise ValueError("no calibration images given")
    src = export_dir / deploy["onnx"]
    input_name = ort.InferenceSession(str(src), providers=["CPUExecutionProvider"]).get_inputs()[0]
    reader_batches = calibration_batches(calib_images, deploy["transforms"], input_name.name)

    class _Reader(q.CalibrationDataReader):
        def get_next(self) -> Optional[Dict[str, np.ndarray]]:
            return next(reader_batches, None)

    out = export_dir / out_name
    with tempfile.TemporaryDirectory() as tmp:
        # Constant folding and shape annotation first, as ONNX Runtime recommends for PTQ;
        # symbolic shape inference cannot resolve paddle2onnx's dynamic resize shapes.
        prepared = Path(tmp) / "prepared.onnx"
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
        q.quantize_static(
            str(prepared), str(out), _Reader(),
            quant_format=q.QuantFormat.QDQ, per_channel=True,
            activation_type=q.QuantType.QUInt8, weight_type=q.QuantType.QInt8,
            calibrate_method={"minmax": q.CalibrationMethod.MinMax,
                              "entropy": q.CalibrationMethod.Entropy,
                              "percentile": q.CalibrationMethod.Percentile}[method],
        )  # fmt: skip
    _register(export_dir, out.name, method, len(calib_images))
    return out


def _register(export_dir: Path, file_name: str, method: str, num_images: int) -> None:
    calibration = {"method": method, "num_images": num_images}
    update_deploy(export_dir, onnx_int8=file_name, int8_calibration=calibration)


class _Tensors:
    """The calibration images as (1, 3, H, W) tensors, read lazily and re-iterable (NNCF
    iterates more than once: statistics, then bias correction)."""

    def __init__(self, images: Sequence[Path], transforms: Sequence[Dict]) -> None:
        self.images, self.transforms = list(images), transforms

    def __iter__(self) -> Iterator[np.ndarray]:
        for feed in calibration_batches(self.images, self.transforms, "x"):
            yield feed["x"]

    def __len__(self) -> int:
        return len(self.images)


def head_names(model: Any) -> List[str]:
    """Friendly names of the convolutions nearest each output (the classifier): walking back
    from the results through resizes, argmax and shape arithmetic to the first conv/matmul."""
    found: List[str] = []
    seen = set()
    stack = [r.input(0).get_source_output().get_node() for r in model.get_results()]
    while stack:
        node = stack.pop()
        name = node.get_friendly_name()
        if name in seen or node.get_type_name() in ("Constant", "Parameter", "ShapeOf"):
            continue
        seen.add(name)
        if node.get_type_name() in ("Convolution", "GroupConvolution", "MatMul"):
            found.append(name)
            continue
        if node.inputs():  # data input only: the others are shapes and scales
            stack.append(node.input(0).get_source_output().get_node())
    return found


def quantize_openvino(
    export_dir: str | Path,
    calib_images: Sequence[Path],
    preset: str = "performance",
    fast_bias_correction: bool = True,
    ignore_head: bool = False,
    out_name: str = OPENVINO_INT8_FILE,
) -> Path:
    """Quantize ``model.onnx`` with NNCF to an OpenVINO INT8 IR and register it in deploy.yaml.

    ``preset`` is NNCF's (performance: symmetric activations; mixed: asymmetric ones, for
    activations that are not centred); ``ignore_head`` keeps the classifier (the convolution
    feeding the output) in float.
    """
    export_dir = Path(export_dir)
    deploy = read_deploy(export_dir)
    backends.check("openvino", "fp32", "cpu", deploy, export_dir)  # installed, has model.onnx
    if importlib.util.find_spec("nncf") is None:
        raise ImportError('--backend openvino needs nncf; pip install -e ".[openvino]"')
    if preset not in PRESETS:
        raise ValueError(f"--preset {preset!r}: choose one of {PRESETS}")
    if not calib_images:
        raise ValueError("no calibration images given")
    for path in calib_images:  # an unreadable image is named before minutes of calibration
        if cv2.imread(str(path), cv2.IMREAD_COLOR) is None:
            raise ValueError(f"calibration image {path} cannot be read")
    import nncf
    import openvino as ov

    # convert_model, not read_model: its MOC transformations fold paddle2onnx's BatchNorms into
    # the convolutions and drop its Identity nodes. On read_model's graph NNCF quantized the
    # activations between a convolution and its BatchNorm (quick-start mIoU 0.6751 -> 0.63 in
    # f32, 0.36 with bf16 float layers; 0.685 after folding).
    model = ov.convert_model(str(export_dir / deploy["onnx"]))
    ignored = head_names(model) if ignore_head else []
    data = _Tensors(calib_images, deploy["transforms"])
    quantized = nncf.quantize(
        model, nncf.Dataset(data), preset=nncf.QuantizationPreset(preset),
        subset_size=len(data), fast_bias_correction=fast_bias_correction,
        ignored_scope=nncf.IgnoredScope(names=ignored) if ignored else None,
    )  # fmt: skip
    out = export_dir / out_name
    with tempfile.TemporaryDirectory(dir=export_dir) as tmp:  # both files, or neither
        staged = Path(tmp) / out_name
        ov.save_model(quantized, str(staged), compress_to_fp16=False)
        staged.with_suffix(".bin").replace(out.with_suffix(".bin"))
        staged.replace(out)
    calibration = {"method": "nncf", "nncf": nncf.__version__, "num_images": len(data),
                   "preset": preset, "fast_bias_correction": fast_bias_correction,
                   "ignored": ignored}  # fmt: skip
    version = max(int(deploy.get("version", 1)), SCHEMA_VERSION)
    update_deploy(export_dir, version=version, openvino_int8=out.name,
                  openvino_int8_calibration=calibration)  # fmt: skip
    return out


def quantize(export_dir: str | Path, calib_images: Sequence[Path], backend: str, **opts) -> Path:
    """The INT8 model of ``backend`` (the table's int8 file), made by its quantizer."""
    key = backends.TABLE[backend].files["int8"][0] if backend in QUANTIZERS else None
    if key is None:
        raise ValueError(f"--backend {backend!r}: quantize.py writes INT8 models for "
                         f"{', '.join(QUANTIZERS)}")  # fmt: skip
    backends.check(backend, "int8", "cpu")  # the runtime is installed
    out = QUANTIZERS[backend](export_dir, calib_images, **opts)
    backends.check(backend, "int8", "cpu", read_deploy(export_dir), Path(export_dir))
    return out


#: Backends whose INT8 model quantize.py writes (the table says which deploy.yaml key).
QUANTIZERS = {"onnxruntime": quantize_int8, "openvino": quantize_openvino}


def list_calibration_images(folder: Path, num_images: int) -> List[Path]:
    """The first ``num_images`` images ``folder`` names (see :func:`deploy.images.list_images`:
    a folder searched recursively, an image or a list file)."""
    return list_images(Path(folder))[:num_images]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--export_dir", required=True, help="a tools/export.py --format onnx folder")
    p.add_argument("--calib_dir", required=True, type=Path, help="folder of calibration images")
    p.add_argument("--num_images", type=int, default=32)
    p.add_argument("--backend", default="onnxruntime", choices=list(QUANTIZERS),
                   help="whose INT8 model to write (default onnxruntime)")  # fmt: skip
    p.add_argument("--method", default="minmax", choices=METHODS,
                   help="onnxruntime: activation range calibration")  # fmt: skip
    p.add_argument("--preset", default="performance", choices=PRESETS,
                   help="openvino: NNCF preset (mixed = asymmetric activations)")  # fmt: skip
    p.add_argument("--ignore_head", action="store_true",
                   help="openvino: keep the classifier convolution in float")  # fmt: skip
    p.add_argument("--no_fast_bias_correction", dest="fast_bias_correction",
                   action="store_false", help="openvino: NNCF's full bias correction")  # fmt: skip
    args = p.parse_args(argv)
    if args.backend == "openvino":
        opts = {"preset": args.preset, "ignore_head": args.ignore_head,
                "fast_bias_correction": args.fast_bias_correction}  # fmt: skip
        what = f"NNCF {args.preset}{', classifier in float' if args.ignore_head else ''}"
    else:
        opts, what = {"method": args.method}, args.method
    try:
        images = list_calibration_images(args.calib_dir, args.num_images)
        out = quantize(args.export_dir, images, args.backend, **opts)
    except (ImageListError, DeployConfigError, ValueError, ImportError) as err:
        raise SystemExit(f"quantize.py: error: {err}") from None
    print(f"wrote {out} (calibrated on {len(images)} images, {what})")


if __name__ == "__main__":
    main()
