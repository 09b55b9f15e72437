"""Export a trained model for Paddle Inference (and ONNX) with a ``deploy.yaml``.

Artefacts in ``save_dir`` (PaddleSeg's layout, Paddle 3 PIR format)::

    model.json, model.pdiparams   the inference program and weights (training heads dropped)
    model.onnx                    with format="onnx" (via paddle2onnx, checked against Paddle)
    deploy.yaml                   files, preprocessing, input shape, output op/dtype, palette

``deploy/`` reads only these files; it never imports this package.
"""

from __future__ import annotations

import copy
import importlib.util
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import paddle
import paddle.nn as nn
import yaml

logger = logging.getLogger("paddle_stdc")

OUTPUT_OPS = ("argmax", "softmax", "none")
FORMATS = ("paddle", "onnx")
DEPLOY_FILE = "deploy.yaml"

# Val transforms the deploy-side preprocessing implements, with PaddleSeg's defaults.
_TRANSFORM_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "Resize": {"target_size": [512, 512], "interp": "LINEAR"},
    "Padding": {"target_size": None, "im_padding_value": 127.5},
}


#: PaddleSeg's default val preprocessing (``Normalize`` with mean = std = 0.5).
NORMALIZE_DEFAULT: List[Dict[str, Any]] = [{"type": "Normalize"}]


class ExportModel(nn.Layer):
    """Eval-mode model followed by the output op.

    (N, 3, H, W) float32 -> argmax: (N, H, W) int32 | softmax: (N, K, H, W) | none: logits.
    """

    def __init__(self, model: nn.Layer, output_op: str = "argmax") -> None:
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise ValueError(f"output_op must be one of {OUTPUT_OPS}, got {output_op!r}")
        self.model = model
        self.output_op = output_op

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        logit = self.model(x)[0]
        if self.output_op == "argmax":
            return paddle.argmax(logit, axis=1, dtype="int32")
        if self.output_op == "softmax":
            return nn.functional.softmax(logit, axis=1)
        return logit


def deploy_transforms(val_transforms: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """The config's val transforms with defaults filled in; unsupported ones are an error."""
    out = []
    for cfg in val_transforms:
        cfg = copy.deepcopy(dict(cfg))
        kind = cfg.pop("type")
        if kind not in _TRANSFORM_DEFAULTS:
            raise ValueError(
                f"val transform {kind!r} cannot be exported; deploy supports "
                f"{sorted(_TRANSFORM_DEFAULTS)}"
            )
        if kind == "Resize" and (cfg.get("keep_ratio") or cfg.get("size_divisor")):
            raise ValueError("Resize with keep_ratio/size_divisor cannot be exported")
        params = {**_TRANSFORM_DEFAULTS[kind], **cfg}
        params.pop("keep_ratio", None)
        params.pop("size_divisor", None)
        params.pop("label_padding_value", None)
        if kind == "Padding" and params["target_size"] is None:
            raise ValueError("Padding needs target_size")
        for key, value in params.items():
            if isinstance(value, (tuple, np.ndarray)):
                params[key] = list(np.asarray(value).tolist())
        out.append({"type": kind, **params})
    return out


@dataclass
class ExportArtifacts:
    save_dir: Path
    model_file: Path
    params_file: Path
    deploy_file: Path
    onnx_file: Optional[Path] = None


def _input_spec(input_shape: Optional[Sequence[int]]) -> List[paddle.static.InputSpec]:
    shape = [None, 3, None, None] if input_shape is None else list(input_shape)
    if len(shape) != 4:
        raise ValueError(f"input_shape must be N C H W, got {shape}")
    shape = [None if (s is None or int(s) < 0) else int(s) for s in shape]
    return [paddle.static.InputSpec(shape, "float32", "x")]


def export_model(
    model: nn.Layer,
    save_dir: str | Path,
    val_transforms: Sequence[Dict[str, Any]],
    num_classes: int,
    *,
    input_shape: Optional[Sequence[int]] = None,
    output_op: str = "argmax",
    fmt: str = "paddle",
    palette: Optional[np.ndarray] = None,
    source: Optional[Dict[str, Any]] = None,
) -> ExportArtifacts:
    """Save ``model`` for inference and write ``deploy.yaml``; see the module docstring."""
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    transforms = deploy_transforms(val_transforms)
    model.eval()
    wrapped = ExportModel(model, output_op)
    wrapped.eval()
    spec = _input_spec(input_shape)
    paddle.jit.save(wrapped, str(save_dir / "model"), input_spec=spec)
    model_file, params_file = save_dir / "model.json", save_dir / "model.pdiparams"
    if not model_file.is_file():
        raise RuntimeError(f"paddle.jit.save did not write {model_file} (is PIR disabled?)")
    deploy = {
        "Deploy": {
            "model": model_file.name,
            "params": params_file.name,
            "onnx": None,
            "transforms": transforms,
            "input_shape": [-1 if s is None else s for s in spec[0].shape],
            "output_op": output_op,
            "output_dtype": "int32" if output_op == "argmax" else "float32",
            "num_classes": int(num_classes),
            "palette": None if palette is None else np.asarray(palette)[:num_classes].tolist(),
            "source": source or {},
        }
    }
    deploy_file = save_dir / DEPLOY_FILE
    # Written before the ONNX step, so a failed conversion still leaves a usable Paddle export.
    deploy_file.write_text(yaml.safe_dump(deploy, sort_keys=False))
    onnx_file = None
    if fmt == "onnx":
        onnx_file = _to_onnx(model_file, params_file, save_dir / "model.onnx")
        try:
            check_onnx(wrapped, onnx_file, spec[0].shape)
        except RuntimeError as err:
            raise RuntimeError(
                f"{err}; deploy.yaml does not reference it, the Paddle export is usable."
            ) from err
        deploy["Deploy"]["onnx"] = onnx_file.name
        deploy_file.write_text(yaml.safe_dump(deploy, sort_keys=False))
    logger.info("Exported to %s (%s, output %s)", save_dir, fmt, output_op)
    return ExportArtifacts(save_dir, model_file, params_file, deploy_file, onnx_file)


_PADDLE2ONNX = """
import sys
import paddle2onnx
model, params, out, opset = sys.argv[1:]
paddle2onnx.export(model, params, save_file=out, opset_version=int(opset),
                   enable_onnx_checker=True, optimize_tool="onnxoptimizer")
"""


def _to_onnx(model_file: Path, params_file: Path, onnx_file: Path, opset: int = 13) -> Path:
    """Convert with paddle2onnx; its optimiser is onnxoptimizer (Polygraphy would pip-install).

    Runs in a child process: paddle2onnx aborts its process (SIGABRT) on an operator it cannot
    convert, which would otherwise kill the caller (a training run, a test session).
    """
    if importlib.util.find_spec("paddle2onnx") is None:
        raise ImportError(
            "--format onnx needs paddle2onnx and onnxruntime: pip install -e '.[onnx]'"
        )
    onnx_file.unlink(missing_ok=True)
    argv = [sys.executable, "-c", _PADDLE2ONNX, str(model_file), str(params_file), str(onnx_file),
            str(opset)]  # fmt: skip
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0 or not onnx_file.is_file():
        # paddle2onnx's own messages, without its empty "[Paddle2ONNX]" lines
        said = [line.strip() for line in (proc.stdout + proc.stderr).splitlines()
                if ("Paddle2ONNX" in line or "not support" in line.lower())
                and line.split("]", 1)[-1].strip()]  # fmt: skip
        raise RuntimeError(
            f"paddle2onnx could not convert {model_file} (exit code {proc.returncode}): "
            f"{' | '.join(said[-8:])}. The Paddle Inference export in {model_file.parent} "
            "is complete and usable without ONNX."
        )
    return onnx_file


def _sample_input(shape: Sequence[Optional[int]]) -> np.ndarray:
    defaults = (1, 3, 256, 512)
    dims = [d if d is not None and d > 0 else defaults[i] for i, d in enumerate(shape)]
    return np.random.RandomState(0).uniform(-1, 1, dims).astype("float32")


def check_onnx(wrapped: ExportModel, onnx_file: Path, shape: Sequence[Optional[int]]) -> float:
    """Compare ONNX Runtime's output with Paddle's on a sample input; raise if they differ.

    Returns the agreement: the fraction of equal argmax labels, or 1 - max abs error.
    """
    import onnxruntime as ort

    x = _sample_input(shape)
    session = ort.InferenceSession(str(onnx_file), providers=["CPUExecutionProvider"])
    got = session.run(None, {session.get_inputs()[0].name: x})[0]
    with paddle.no_grad():
        ref = wrapped(paddle.to_tensor(x)).numpy()
    if got.shape != ref.shape:
        raise RuntimeError(f"ONNX output shape {got.shape} != Paddle's {ref.shape}")
    if wrapped.output_op == "argmax":
        agreement = float((got == ref).mean())
        ok = agreement >= 0.999
    else:
        err = float(np.abs(got - ref).max())
        agreement, ok = 1.0 - err, err < 1e-3
    if not ok:
        raise RuntimeError(
            f"{onnx_file}: ONNX Runtime's output disagrees with Paddle's (agreement "
            f"{agreement:.5f})"
        )
    logger.info("ONNX Runtime agrees with Paddle: %.5f", agreement)
    return agreement
