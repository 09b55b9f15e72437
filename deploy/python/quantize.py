"""INT8 post-training quantization of an ONNX export, calibrated on a folder of images.

    python deploy/python/quantize.py --export_dir output/export --calib_dir images/ \
        [--num_images 32] [--method minmax|entropy|percentile]

Writes ``model_int8.onnx`` (QDQ format: per-channel int8 weights, uint8 activations) next to
``model.onnx`` and records it as ``Deploy.onnx_int8`` in ``deploy.yaml``. The QDQ model runs in
ONNX Runtime on CPU (``OnnxPredictor(export_dir, precision="int8")``, ``infer.py --backend
onnxruntime --precision int8``) and is what TensorRT's explicit quantization consumes. The
calibration images go through the export's own val transforms, so calibrate on images like the
ones you serve (a few dozen from the training set). Needs ``onnxruntime`` and ``ml_dtypes<0.6``.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Dict, Iterator, List, Optional, Sequence

import cv2
import numpy as np

try:
    from deploy.images import ImageListError, list_images
    from deploy.python.predictor import preprocess
    from deploy.schema import DeployConfigError, read_deploy, update_deploy
except ModuleNotFoundError as _err:  # run as a file without `pip install -e .`
    raise SystemExit(f"quantize.py: error: {_err}; run `pip install -e .`") from None

METHODS = ("minmax", "entropy", "percentile")
INT8_FILE = "model_int8.onnx"


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


def list_calibration_images(folder: Path, num_images: int) -> List[Path]:
    """The first ``num_images`` images ``folder`` names (see :func:`deploy.images.list_images`:
    a folder searched recursively, an image or a list file)."""
    return list_images(Path(folder))[:num_images]


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--export_dir", required=True, help="a tools/export.py --format onnx folder")
    p.add_argument("--calib_dir", required=True, type=Path, help="folder of calibration images")
    p.add_argument("--num_images", type=int, default=32)
    p.add_argument("--method", default="minmax", choices=METHODS)
    args = p.parse_args(argv)
    try:
        images = list_calibration_images(args.calib_dir, args.num_images)
        out = quantize_int8(args.export_dir, images, args.method)
    except (ImageListError, DeployConfigError, ValueError, ImportError) as err:
        raise SystemExit(f"quantize.py: error: {err}") from None
    print(f"wrote {out} (calibrated on {len(images)} images, {args.method})")


if __name__ == "__main__":
    main()
