"""The ``deploy.yaml`` schema: key names, defaults, version, writer and reader/validator.

One module for both sides: ``paddle_stdc/export.py`` writes ``deploy.yaml`` through
:func:`build_deploy` / :func:`write_deploy`, every predictor reads it through
:func:`read_deploy`. It imports neither ``paddle_stdc`` nor PaddleSeg (nor Paddle).

Version 3 (written today)::

    Deploy:
      version: 3
      model: model.json            # Paddle 3 PIR program
      params: model.pdiparams
      onnx: null | model.onnx      # --format onnx
      onnx_int8: null | model_int8.onnx   # deploy/python/quantize.py
      int8_calibration: null | {method, num_images}
      openvino_int8: null | model_openvino_int8.xml   # quantize.py --backend openvino (+ .bin)
      openvino_int8_calibration: null | {method, num_images, ...NNCF settings}
      transforms: [...]            # val preprocessing, PaddleSeg names, defaults filled in
      input_shape: [N, C, H, W]    # -1 = dynamic; a fixed dimension is checked by predictors
      output_op: argmax | softmax | none   # the op at the end of the exported graph
      output_dtype: int32 | float32
      eval_scale: 1.0              # Seg50 = 0.5, Seg75 = 0.75: applied INSIDE the graph
      num_classes: K
      palette: null | [[R, G, B], ...]   # per class id: the config's palette or the dataset's
      class_names: null | [name, ...]    # per class id, from the config's dataset (v3)
      source: {config, model_path, model}

Version 2 is version 3 without ``class_names`` and the ``openvino_int8*`` keys (read as
null; :func:`class_names_of` then knows Cityscapes'/VOC's names from the source config's
name, else none). A file without ``version`` is version 1: also without ``version`` and
``eval_scale`` (read as 1.0). Every version is still read.
"""

from __future__ import annotations

import copy
import numbers
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Union

import yaml

SCHEMA_VERSION = 3
#: Versions this code reads (older files lack keys added since; see the module docstring).
READABLE_VERSIONS = (1, 2, 3)
DEPLOY_FILE = "deploy.yaml"
OUTPUT_OPS = ("argmax", "softmax", "none")
REQUIRED_KEYS = ("model", "params", "transforms", "input_shape", "output_op", "output_dtype")
#: Optional keys and the value a file without them means.
DEFAULTS: Dict[str, Any] = {
    "onnx": None,
    "onnx_int8": None,
    "int8_calibration": None,
    "openvino_int8": None,
    "openvino_int8_calibration": None,
    "eval_scale": 1.0,
    "num_classes": None,
    "palette": None,
    "class_names": None,
    "source": {},
}
FILE_KEYS = ("model", "params", "onnx", "onnx_int8", "openvino_int8")
#: Val transforms deploy implements, with PaddleSeg's defaults.
TRANSFORM_DEFAULTS: Dict[str, Dict[str, Any]] = {
    "Normalize": {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5]},
    "Resize": {"target_size": [512, 512], "interp": "LINEAR"},
    "Padding": {"target_size": None, "im_padding_value": 127.5},
}
#: Resize interpolations (PaddleSeg's names; RANDOM is a training-time choice).
INTERPOLATIONS = ("NEAREST", "LINEAR", "CUBIC", "AREA", "LANCZOS4")

PathLike = Union[str, Path]


class DeployConfigError(ValueError):
    """deploy.yaml is missing, malformed, or names files that do not exist."""


# ---------------------------------------------------------------------------------- writing


def _plain(value: Any) -> Any:
    """Tuples / NumPy arrays and scalars -> YAML-safe lists and Python numbers."""
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, tuple):
        return [_plain(v) for v in value]
    return value


def deploy_transforms(val_transforms: Sequence[Dict[str, Any]]) -> List[Dict[str, Any]]:
    """A config's val transforms with defaults filled in; an unsupported one is a ValueError."""
    out = []
    for cfg in val_transforms:
        cfg = copy.deepcopy(dict(cfg))
        kind = cfg.pop("type", None)
        if kind not in TRANSFORM_DEFAULTS:
            raise ValueError(
                f"val transform {kind!r} cannot be exported; deploy supports "
                f"{sorted(TRANSFORM_DEFAULTS)}"
            )
        if kind == "Resize" and (cfg.get("keep_ratio") or cfg.get("size_divisor")):
            raise ValueError("Resize with keep_ratio/size_divisor cannot be exported")
        params = {**TRANSFORM_DEFAULTS[kind], **cfg}
        for key in ("keep_ratio", "size_divisor", "label_padding_value"):
            params.pop(key, None)
        if kind == "Padding" and params["target_size"] is None:
            raise ValueError("Padding needs target_size")
        entry = {"type": kind, **{k: _plain(v) for k, v in params.items()}}
        _check_transform(entry, "val transform")
        out.append(entry)
    return out


def build_deploy(
    *,
    transforms: Sequence[Dict[str, Any]],
    input_shape: Sequence[int],
    output_op: str,
    num_classes: int,
    eval_scale: float = 1.0,
    palette: Optional[Sequence[Sequence[int]]] = None,
    class_names: Optional[Sequence[str]] = None,
    source: Optional[Dict[str, Any]] = None,
    model: str = "model.json",
    params: str = "model.pdiparams",
) -> Dict[str, Any]:
    """The ``Deploy`` mapping of a version-3 deploy.yaml (``transforms`` already filled in)."""
    if output_op not in OUTPUT_OPS:
        raise ValueError(f"output_op must be one of {OUTPUT_OPS}, got {output_op!r}")
    if class_names is not None and len(class_names) != int(num_classes):
        raise ValueError(f"{len(class_names)} class names for {num_classes} classes")
    return {
        "version": SCHEMA_VERSION,
        "model": model,
        "params": params,
        "onnx": None,
        "transforms": [dict(t) for t in transforms],
        "input_shape": [-1 if s is None else int(s) for s in input_shape],
        "output_op": output_op,
        "output_dtype": "int32" if output_op == "argmax" else "float32",
        "eval_scale": float(eval_scale),
        "num_classes": int(num_classes),
        "palette": None if palette is None else _plain(palette),
        "class_names": None if class_names is None else [str(n) for n in class_names],
        "source": dict(source or {}),
    }


def write_deploy(export_dir: PathLike, deploy: Dict[str, Any]) -> Path:
    """Write ``export_dir/deploy.yaml`` atomically (a reader never sees half a file)."""
    path = Path(export_dir) / DEPLOY_FILE
    tmp = path.with_suffix(".yaml.tmp")
    tmp.write_text(yaml.safe_dump({"Deploy": deploy}, sort_keys=False))
    tmp.replace(path)
    return path


def update_deploy(export_dir: PathLike, **changes: Any) -> Dict[str, Any]:
    """Set keys of an existing deploy.yaml (e.g. ``onnx_int8``) keeping the rest as written."""
    path = Path(export_dir) / DEPLOY_FILE
    deploy = _load_mapping(path)
    deploy.update(changes)
    write_deploy(export_dir, deploy)
    return deploy


# ---------------------------------------------------------------------------------- reading


def _load_mapping(path: Path) -> Dict[str, Any]:
    if not path.is_file():
        raise DeployConfigError(f"{path} not found: point at a tools/export.py output folder")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        raise DeployConfigError(f"{path} is not valid YAML: {err}") from err
    deploy = doc.get("Deploy") if isinstance(doc, dict) else None
    if not isinstance(deploy, dict):
        raise DeployConfigError(f"{path} has no `Deploy` mapping")
    return deploy


def _is_int_list(value: Any, length: int) -> bool:
    return (
        isinstance(value, list)
        and len(value) == length
        and all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in value)
    )


def _check_transform(t: Any, where: str) -> None:
    """Raise ValueError naming the transform's bad key; ``where`` prefixes the message."""
    if not isinstance(t, dict) or t.get("type") not in TRANSFORM_DEFAULTS:
        kind = t.get("type") if isinstance(t, dict) else t
        raise ValueError(f"{where} {kind!r} is not supported (use {sorted(TRANSFORM_DEFAULTS)})")
    kind = t["type"]
    if kind in ("Resize", "Padding"):
        size = t.get("target_size")
        if not _is_int_list(size, 2) or min(size) <= 0:
            raise ValueError(
                f"{where} {kind}.target_size {size!r} must be two positive ints [w, h]"
            )
    if kind == "Resize" and t.get("interp", "LINEAR") not in INTERPOLATIONS:
        raise ValueError(f"{where} Resize.interp {t.get('interp')!r}: use one of {INTERPOLATIONS}")
    if kind == "Normalize":
        for key in ("mean", "std"):
            value = t.get(key)
            if not isinstance(value, list) or len(value) not in (1, 3):
                raise ValueError(f"{where} Normalize.{key} {value!r} must be 1 or 3 numbers")
        if any(float(s) == 0 for s in t["std"]):
            raise ValueError(f"{where} Normalize.std {t['std']!r} contains 0")


def _check_classes(path: Path, deploy: Dict[str, Any]) -> None:
    """``palette`` is a list of [R, G, B] in 0..255; ``class_names`` one string per class."""
    palette = deploy.get("palette")
    if palette is not None and not (
        isinstance(palette, list)
        and all(_is_int_list(c, 3) and all(0 <= v <= 255 for v in c) for c in palette)
    ):
        raise DeployConfigError(f"{path}: Deploy.palette must be a list of [R, G, B] in 0..255")
    names, k = deploy.get("class_names"), deploy.get("num_classes")
    if names is None:
        return
    if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
        raise DeployConfigError(f"{path}: Deploy.class_names must be a list of non-empty strings")
    if k is not None and len(names) != k:
        raise DeployConfigError(
            f"{path}: Deploy.class_names has {len(names)} names for num_classes {k}"
        )


def _check_values(path: Path, deploy: Dict[str, Any]) -> None:
    if deploy["output_op"] not in OUTPUT_OPS:
        raise DeployConfigError(
            f"{path}: Deploy.output_op {deploy['output_op']!r} is unknown (use {OUTPUT_OPS})"
        )
    shape = deploy["input_shape"]
    if not _is_int_list(shape, 4):
        raise DeployConfigError(f"{path}: Deploy.input_shape {shape!r} must be 4 ints N C H W")
    scale = deploy["eval_scale"]
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not scale > 0:
        raise DeployConfigError(f"{path}: Deploy.eval_scale {scale!r} must be a number > 0")
    _check_classes(path, deploy)
    if not isinstance(deploy["transforms"], list):
        raise DeployConfigError(f"{path}: Deploy.transforms must be a list")
    for i, t in enumerate(deploy["transforms"]):
        try:
            _check_transform(t, f"Deploy.transforms[{i}]")
        except ValueError as err:
            raise DeployConfigError(f"{path}: {err}") from None


def read_deploy(export_dir: PathLike) -> Dict[str, Any]:
    """Read and check ``export_dir/deploy.yaml``; errors name the file and the key.

    Returns the ``Deploy`` mapping with ``version`` set (1 for files written before versioning)
    and the optional keys whose default is not None filled in (``eval_scale``, ``source``).
    """
    export_dir = Path(export_dir)
    path = export_dir / DEPLOY_FILE
    deploy = _load_mapping(path)
    version = deploy.get("version", 1)
    if version not in READABLE_VERSIONS:
        raise DeployConfigError(
            f"{path}: Deploy.version {version!r} is not supported (this deploy code reads "
            f"{', '.join(map(str, READABLE_VERSIONS))}); re-export with this version of "
            "tools/export.py"
        )
    for key in REQUIRED_KEYS:
        if key not in deploy:
            raise DeployConfigError(f"{path}: key Deploy.{key} is missing")
    # Keys whose default is None stay absent (read them with .get); the others are filled in.
    filled = {k: copy.deepcopy(v) for k, v in DEFAULTS.items() if v is not None}
    deploy = {**filled, **deploy, "version": version}
    _check_values(path, deploy)
    for key in FILE_KEYS:
        name = deploy.get(key)
        if (key in ("model", "params") or name) and not (export_dir / str(name)).is_file():
            raise DeployConfigError(f"{path}: Deploy.{key} file {name} does not exist")
    xml = deploy.get("openvino_int8")
    if xml and not (export_dir / str(xml)).with_suffix(".bin").is_file():
        raise DeployConfigError(
            f"{path}: Deploy.openvino_int8 {xml} has no weights file "
            f"{Path(str(xml)).with_suffix('.bin')} next to it"
        )
    return deploy


# ---------------------------------------------------------------------------------- classes

#: Names of the two datasets whose exports before version 3 can be recognised by their
#: source config's file name; ``paddle_stdc.data.palettes`` uses these same tuples.
CITYSCAPES_CLASSES = (
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign",
    "vegetation", "terrain", "sky", "person", "rider", "car", "truck", "bus", "train",
    "motorcycle", "bicycle",
)  # fmt: skip
VOC_CLASSES = (
    "background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat",
    "chair", "cow", "diningtable", "dog", "horse", "motorbike", "person", "pottedplant",
    "sheep", "sofa", "train", "tvmonitor",
)  # fmt: skip


def class_names_of(
    deploy: Dict[str, Any], given: Optional[Sequence[str]] = None
) -> Optional[List[str]]:
    """The class names to show: ``given`` (e.g. serving's ``--class_names``), else the
    export's ``class_names`` (version 3), else -- for older exports -- Cityscapes'/VOC's
    when the source config's file name says so; None when unknown (show ids).

    ``given`` with a count other than ``num_classes`` is a ValueError.
    """
    k = deploy.get("num_classes")
    if given:
        names = [str(n) for n in given]
        if k and len(names) != k:
            raise ValueError(f"{len(names)} class names for an export with {k} classes")
        return names
    if deploy.get("class_names"):
        return list(deploy["class_names"])
    config = str((deploy.get("source") or {}).get("config", "")).lower()
    if k == 19 and "cityscapes" in config:
        return list(CITYSCAPES_CLASSES)
    if k == 21 and "voc" in config:
        return list(VOC_CLASSES)
    return None
