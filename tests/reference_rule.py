"""The reference fixtures' weight rule and checkpoint containers, re-implemented with numpy.

``tests/fixtures/reference/`` holds outputs of the ORIGINAL implementations (official STDC-Seg,
mmsegmentation 1.2.2, CoinCheung/BiSeNet, sssegmentation 1.7.0) for weights given by a
deterministic rule over key names and shapes (copied from the project's shared reference set;
its README describes how they were made). This module regenerates each source checkpoint from a
fixture's JSON alone, in the source's own container layout, so a test can write it as a PyTorch
file, convert it with our CLI and compare our model's outputs with the stored ones.
"""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Dict, List, Optional

import numpy as np

FIXTURES = Path(__file__).parent / "fixtures" / "reference"


def rule_u(key: str, n: int, seed: int = 0) -> np.ndarray:
    """frac(sin((i + 1) * 12.9898 + (crc32(key) % 100003) * 0.001 + seed * 7.233) * 43758.5453)
    * 2 - 1 for i < n, in float64 and in exactly this order (values in [-1, 1))."""
    offset = (zlib.crc32(key.encode()) % 100003) * 0.001 + seed * 7.233
    t = np.sin((np.arange(n, dtype=np.float64) + 1) * 12.9898 + offset) * 43758.5453
    return (t - np.floor(t)) * 2 - 1


def rule_value(key: str, shape, role: str, seed: int = 0) -> np.ndarray:
    """The value of tensor ``key``; ``role`` (recorded per key in the fixture) picks the scale."""
    shape = tuple(int(s) for s in shape)
    if role == "num_batches_tracked":
        return np.zeros(shape, dtype=np.int64)
    u = rule_u(key, int(np.prod(shape, dtype=np.int64)), seed)
    if role == "running_var":
        v = 1.0 + 0.5 * u
    elif role == "bn_weight":  # both signs on purpose (InPlaceABN scales by |w| + eps)
        v = np.where(u < 0, -1.0, 1.0) * (0.75 + 0.5 * np.abs(u))
    elif role == "conv_weight":
        v = u * np.sqrt(3.0) * np.sqrt(2.0 / int(np.prod(shape[1:], dtype=np.int64)))
    elif role in ("running_mean", "bn_bias", "bias", "other"):
        v = 0.1 * u
    else:
        raise ValueError(f"unknown role {role!r} for {key}")
    return v.reshape(shape).astype(np.float32)


def rule_input(height: int, width: int, seed: int = 0) -> np.ndarray:
    """The (1, 3, H, W) input of an HxW fixture, values in (-0.5, 0.5)."""
    return (
        (0.5 * rule_u("input", 3 * height * width, seed))
        .reshape(1, 3, height, width)
        .astype(np.float32)
    )


def load_fixture(name: str) -> dict:
    return json.loads((FIXTURES / f"{name}.json").read_text())


def fixture_names() -> List[str]:
    return sorted(p.stem for p in FIXTURES.glob("*.json"))


def state_dict(fixture: dict) -> Dict[str, np.ndarray]:
    """Key -> array in the fixture's key order; an alias is the same array object as the key it
    aliases (those tensors share storage in the original checkpoint)."""
    seed = fixture.get("seed", 0)
    out: Dict[str, np.ndarray] = {}
    for key, shape, dtype, role, alias_of in fixture["keys"]:
        out[key] = out[alias_of] if alias_of is not None else rule_value(key, shape, role, seed)
        assert str(out[key].dtype) == dtype, (key, out[key].dtype, dtype)
    return out


def checkpoint(fixture: dict, dtype: Optional[str] = None) -> object:
    """The checkpoint object in the source's container (``bare``, ``wrapped`` or ``split``);
    ``dtype`` ("float16") casts the float tensors, as a half-precision release file stores them."""
    sd = state_dict(fixture)
    if dtype is not None:
        cast = {id(v): v.astype(dtype) if v.dtype.kind == "f" else v for v in sd.values()}
        sd = {k: cast[id(v)] for k, v in sd.items()}
    container = fixture["container"]
    layout = container["layout"]
    if layout == "bare":
        return sd
    if layout == "wrapped":
        at = container["state_dict_at"]
        return {k: sd if k == at else container["extra"][k] for k in container["top_level"]}
    if layout == "split":
        return {
            part: {k[len(prefix) :]: v for k, v in sd.items() if k.startswith(prefix)}
            for part, prefix in container["parts"].items()
        }
    raise ValueError(f"unknown container layout {layout!r}")


def outputs(fixture: dict) -> Dict[str, Dict[str, np.ndarray]]:
    """Size tag ("64x128") -> arrays of the original implementation (``input`` included); sizes
    the original could not run (recorded as ``error``) are left out."""
    out = {}
    for tag, entry in fixture["outputs"].items():
        if "file" not in entry:
            continue
        with np.load(FIXTURES / entry["file"]) as arrays:
            out[tag] = {k: arrays[k] for k in arrays.files}
    return out
