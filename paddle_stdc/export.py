"""Export a trained model for Paddle Inference (and ONNX) with a ``deploy.yaml``.

Artefacts in ``save_dir`` (PaddleSeg's layout, Paddle 3 PIR format)::

    model.json, model.pdiparams   the inference program and weights (training heads dropped)
    model.onnx                    with format="onnx" (via paddle2onnx, checked against Paddle)
    deploy.yaml                   files, preprocessing, input shape, output op/dtype,
                                  eval_scale, palette, class names (schema:
                                  :mod:`deploy.schema`, version 3)

``deploy/`` reads only these files; it never imports this package. This module writes
deploy.yaml through ``deploy.schema``, the one definition of its keys.

The deploy path computes what evaluation (:func:`paddle_stdc.engine.inference.infer_logits`,
single scale, whole image) computes:

- ``eval_scale`` (Seg50 = 0.5, Seg75 = 0.75) is part of the graph: the input is resized by it
  and the logits back to the input size, both bilinear with align_corners=True, before the
  output op -- the Paddle ops evaluation runs. (OpenCV has no align_corners=True resize, so
  the predictors could not do it exactly on the CPU.)
- val ``Padding`` is cropped off the predictor's output (exact on masks and scores alike).
- a val ``Resize`` has to be undone on logits (bilinear), not on masks: with a ``Resize`` in
  the val transforms, an ``argmax`` export writes the graph without its argmax
  (``output_op: none``, logged) and the predictor resizes the logits back, then takes the
  argmax. Without a val ``Resize`` (every shipped config) the graph ends in the argmax.
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
import paddle.nn.functional as F

from deploy.schema import (
    DEPLOY_FILE,
    OUTPUT_OPS,
    build_deploy,
    deploy_transforms,
    update_deploy,
    write_deploy,
)
from paddle_stdc.models.backbones.stdcnet import AvgPool3x3S2
from paddle_stdc.models.layers import NonNeg

__all__ = [
    "DEPLOY_FILE", "OUTPUT_OPS", "FORMATS", "NORMALIZE_DEFAULT", "ExportModel", "ExportArtifacts",
    "deploy_transforms", "export_model", "check_onnx", "protocol_eval_scale",
    "prepare_for_export",
]  # fmt: skip

logger = logging.getLogger("paddle_stdc")

FORMATS = ("paddle", "onnx")

#: PaddleSeg's default val preprocessing (``Normalize`` with mean = std = 0.5).
NORMALIZE_DEFAULT: List[Dict[str, Any]] = [{"type": "Normalize"}]


class FusedAvgPool3x3S2(AvgPool3x3S2):
    """:class:`AvgPool3x3S2` as exported: a 1/9 box conv times the reciprocal of count / 9,
    each ReLU-marked (both are >= 0), so Paddle Inference's oneDNN passes fuse them (unfused
    conv + divide ~18 ms, fused ~5 ms at 512x1024; values equal up to float rounding)."""

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        channels = x.shape[1]
        mean9 = F.relu(F.conv2d(x, paddle.full([channels, 1, 3, 3], 1.0 / 9.0), stride=2,
                                padding=1, groups=channels))  # fmt: skip
        if self.count_pad:
            return mean9
        ones = paddle.ones_like(x[:, :1])
        count9 = F.conv2d(ones, paddle.full([1, 1, 3, 3], 1.0 / 9.0), stride=2, padding=1)
        # reciprocal-then-multiply: oneDNN fuses "multiply -> relu" but not "divide -> relu".
        return F.relu(paddle.reciprocal(count9) * mean9)


def prepare_for_export(model: nn.Layer) -> nn.Layer:
    """Rewrite ``model`` in place into its export form and return it (as timm's
    ``reparameterize_model``): every :class:`NonNeg` becomes a ReLU (the identity on its
    values) and every :class:`AvgPool3x3S2` its fused form, which Paddle Inference's oneDNN
    passes fuse; the network computes the same numbers. Model files describe only the network.
    """
    for layer in model.sublayers(include_self=True):
        for name, child in list(layer.named_children()):
            if isinstance(child, NonNeg):
                setattr(layer, name, nn.ReLU())
            elif type(child) is AvgPool3x3S2:
                setattr(layer, name, FusedAvgPool3x3S2(child.count_pad))
    return model


class ExportModel(nn.Layer):
    """Eval-mode model under the evaluation protocol's input scale, then the output op.

    (N, 3, H, W) float32 -> argmax: (N, H, W) int32 | softmax: (N, K, H, W) | none: logits.
    ``eval_scale`` != 1 resizes the input to ``floor(size * eval_scale)`` and the logits back
    to (H, W), bilinear with align_corners=True, as evaluation's Seg50/Seg75 protocol.
    """

    def __init__(self, model: nn.Layer, output_op: str = "argmax", eval_scale: float = 1.0):
        super().__init__()
        if output_op not in OUTPUT_OPS:
            raise ValueError(f"output_op must be one of {OUTPUT_OPS}, got {output_op!r}")
        if not float(eval_scale) > 0:
            raise ValueError(f"eval_scale must be > 0, got {eval_scale!r}")
        self.model = model
        self.output_op = output_op
        self.eval_scale = float(eval_scale)

    def logits(self, x: paddle.Tensor) -> paddle.Tensor:
        """Logits (N, K, H, W) at the input size, under the protocol's ``eval_scale``."""
        if self.eval_scale == 1.0:
            return self.model(x)[0]
        size = paddle.shape(x)[2:]
        # floor(size * scale) in float64 as evaluation's int(d * eval_scale); an explicit size,
        # not scale_factor, which paddle2onnx cannot convert (double-valued attribute).
        small = paddle.floor(size.astype("float64") * self.eval_scale).astype("int32")
        small = paddle.maximum(small, paddle.ones_like(small))
        scaled = F.interpolate(x, size=small, mode="bilinear", align_corners=True)
        logit = self.model(scaled)[0]
        return F.interpolate(logit, size=size, mode="bilinear", align_corners=True)

    def forward(self, x: paddle.Tensor) -> paddle.Tensor:
        logit = self.logits(x)
        if self.output_op == "argmax":
            return paddle.argmax(logit, axis=1, dtype="int32")
        if self.output_op == "softmax":
            return F.softmax(logit, axis=1)
        return logit


def protocol_eval_scale(test_config: Optional[Dict[str, Any]]) -> float:
    """The ``eval_scale`` of a config's ``test_config`` (1.0 without one).

    Deploy runs one scale over the whole image: multi-scale/flip (``aug_eval``) and sliding
    windows (``is_slide``) are not exported, which is logged as a warning.
    """
    from paddle_stdc.engine.inference import EvalProtocol

    try:
        protocol = EvalProtocol.from_dict(dict(test_config or {}))
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"test_config: {err}") from None
    if protocol.aug_eval or protocol.is_slide:
        logger.warning(
            "test_config asks for %s; the export runs single-scale whole-image inference "
            "(only eval_scale %g is exported)", protocol.describe(), protocol.eval_scale,
        )  # fmt: skip
    return protocol.eval_scale


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


def graph_output_op(output_op: str, transforms: Sequence[Dict[str, Any]]) -> str:
    """The op the graph ends with: ``output_op``, except ``none`` for argmax + a val Resize."""
    if output_op == "argmax" and any(t["type"] == "Resize" for t in transforms):
        logger.info(
            "val transforms resize the image: exporting logits (output_op none) so that the "
            "predictor resizes them back before the argmax, as evaluation does"
        )
        return "none"
    return output_op


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
    class_names: Optional[Sequence[str]] = None,
    source: Optional[Dict[str, Any]] = None,
    eval_scale: Optional[float] = None,
    test_config: Optional[Dict[str, Any]] = None,
) -> ExportArtifacts:
    """Save ``model`` for inference and write ``deploy.yaml``; see the module docstring.

    ``test_config`` is the config's evaluation section (its ``eval_scale`` is exported);
    ``eval_scale`` given explicitly wins over it. ``palette`` and ``class_names`` (one per
    class, e.g. :func:`paddle_stdc.data.palettes.config_class_names`) travel in deploy.yaml
    to infer.py's overlays and serving.
    """
    if class_names is not None and len(class_names) != num_classes:
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if output_op not in OUTPUT_OPS:
        raise ValueError(f"output_op must be one of {OUTPUT_OPS}, got {output_op!r}")
    scale = protocol_eval_scale(test_config) if eval_scale is None else float(eval_scale)
    save_dir = Path(save_dir)
    save_dir.mkdir(parents=True, exist_ok=True)
    transforms = deploy_transforms(val_transforms)
    graph_op = graph_output_op(output_op, transforms)
    model.eval()
    wrapped = ExportModel(prepare_for_export(copy.deepcopy(model)), graph_op, scale)
    wrapped.eval()
    spec = _input_spec(input_shape)
    paddle.jit.save(wrapped, str(save_dir / "model"), input_spec=spec)
    model_file, params_file = save_dir / "model.json", save_dir / "model.pdiparams"
    if not model_file.is_file():
        raise RuntimeError(f"paddle.jit.save did not write {model_file} (is PIR disabled?)")
    deploy = build_deploy(
        transforms=transforms,
        input_shape=spec[0].shape,
        output_op=graph_op,
        num_classes=num_classes,
        eval_scale=scale,
        palette=None if palette is None else np.asarray(palette)[:num_classes].tolist(),
        class_names=class_names,
        source=source,
        model=model_file.name,
        params=params_file.name,
    )
    # Written before the ONNX step, so a failed conversion still leaves a usable Paddle export.
    deploy_file = write_deploy(save_dir, deploy)
    onnx_file = None
    if fmt == "onnx":
        onnx_file = _to_onnx(model_file, params_file, save_dir / "model.onnx")
        try:
            check_onnx(wrapped, onnx_file, spec[0].shape)
        except RuntimeError as err:
            raise RuntimeError(
                f"{err}; deploy.yaml does not reference it, the Paddle export is usable."
            ) from err
        update_deploy(save_dir, onnx=onnx_file.name)
    logger.info("Exported to %s (%s, output %s, eval_scale %g)", save_dir, fmt, graph_op, scale)
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
