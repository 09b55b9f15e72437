"""A tiny writer of PyTorch checkpoint files for the tests (PyTorch itself is not needed).

It writes what ``torch.save`` writes: the zip layout (``archive/data.pkl`` with persistent ids
``('storage', torch.<T>Storage, key, 'cpu', numel)`` and ``archive/data/<key>`` raw little-endian
bytes, tensors rebuilt by ``torch._utils._rebuild_tensor_v2``) or the pre-1.6 legacy stream.
Checked by hand against torch 2.13: ``torch.load(..., weights_only=True)`` reads both files
this module writes, and :mod:`paddle_stdc.utils.torch_pickle` reads files ``torch.save`` wrote.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, Dict, Optional

import numpy as np

_STORAGE_NAMES = {
    np.dtype("float32"): "FloatStorage",
    np.dtype("float64"): "DoubleStorage",
    np.dtype("float16"): "HalfStorage",
    np.dtype("int64"): "LongStorage",
    np.dtype("int32"): "IntStorage",
    np.dtype("uint8"): "ByteStorage",
    np.dtype("bool"): "BoolStorage",
}


class _Global:
    """Pickled as a bare GLOBAL opcode (module and name need not be importable here)."""

    def __init__(self, module: str, name: str) -> None:
        self.module, self.name = module, name

    def __call__(self, *args):  # pickle insists that a reduce function be callable
        raise TypeError(f"{self.module}.{self.name} is a placeholder")


class _Tensor:
    def __init__(self, array: np.ndarray, key: str, legacy: bool) -> None:
        self.array = np.array(array, order="C")  # keeps 0-d arrays 0-d
        self.key = key
        self.legacy = legacy

    def storage_pid(self):
        pid = (
            "storage",
            _Global("torch", _STORAGE_NAMES[self.array.dtype]),
            self.key,
            "cpu",
            int(self.array.size),
        )
        return pid + (None,) if self.legacy else pid

    def __reduce_ex__(self, protocol):
        shape = tuple(int(s) for s in self.array.shape)
        strides = tuple(int(s) // self.array.itemsize for s in self.array.strides)
        args = (_StorageRef(self), 0, shape, strides, False, OrderedDict())
        return (_Global("torch._utils", "_rebuild_tensor_v2"), args)


class _StorageRef:
    def __init__(self, tensor: _Tensor) -> None:
        self.tensor = tensor


class _Pickler(pickle._Pickler):
    dispatch = pickle._Pickler.dispatch.copy()

    def _save_bare_global(self, obj: _Global) -> None:
        self.write(pickle.GLOBAL + f"{obj.module}\n{obj.name}\n".encode("ascii"))

    dispatch[_Global] = _save_bare_global

    def persistent_id(self, obj: Any):
        if isinstance(obj, _StorageRef):
            return obj.tensor.storage_pid()
        return None


def _wrap(obj: Any, tensors: list, legacy: bool, memo: Optional[dict] = None) -> Any:
    """Stand-ins for the arrays in ``obj``; one array object given twice shares one storage,
    as tensors that share storage do in ``torch.save`` (e.g. STDCNet's ``x2`` / ``features``)."""
    memo = {} if memo is None else memo
    if isinstance(obj, np.ndarray):
        if id(obj) not in memo:
            memo[id(obj)] = _Tensor(obj, str(len(tensors)), legacy)
            tensors.append(memo[id(obj)])
        return memo[id(obj)]
    if isinstance(obj, dict):
        return OrderedDict((k, _wrap(v, tensors, legacy, memo)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(_wrap(v, tensors, legacy, memo) for v in obj)
    return obj


def _dumps(obj: Any) -> bytes:
    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(obj)
    return buf.getvalue()


def save_torch_zip(obj: Any, path: Path, archive: str = "archive") -> Path:
    """Write ``obj`` (dicts/lists of numpy arrays and plain values) like ``torch.save``."""
    tensors: list = []
    data = _dumps(_wrap(obj, tensors, legacy=False))
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(f"{archive}/data.pkl", data)
        zf.writestr(f"{archive}/byteorder", "little")
        for t in tensors:
            zf.writestr(
                f"{archive}/data/{t.key}", t.array.astype(t.array.dtype.newbyteorder("<")).tobytes()
            )
        zf.writestr(f"{archive}/version", "3\n")
    return path


def save_torch_legacy(obj: Any, path: Path) -> Path:
    """Write ``obj`` in the pre-1.6 ``torch.save`` stream format."""
    tensors: list = []
    body = _dumps(_wrap(obj, tensors, legacy=True))
    sys_info = {"protocol_version": 1001, "little_endian": True,
                "type_sizes": {"short": 2, "int": 4, "long": 4}}  # fmt: skip
    with open(path, "wb") as f:
        f.write(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
        f.write(pickle.dumps(1001, protocol=2))
        f.write(pickle.dumps(sys_info, protocol=2))
        f.write(body)
        f.write(pickle.dumps([t.key for t in tensors], protocol=2))
        for t in tensors:
            f.write(struct.pack("<q", t.array.size))
            f.write(t.array.tobytes())
    return path


def random_state(spec: Dict[str, tuple], seed: int = 0) -> Dict[str, np.ndarray]:
    """Float32 tensors of the given shapes; BN variances positive, counters int64."""
    rng = np.random.default_rng(seed)
    out = {}
    for name, shape in spec.items():
        if name.endswith("num_batches_tracked"):
            out[name] = np.array(1000, dtype=np.int64)
        elif name.endswith("running_var"):
            out[name] = rng.uniform(0.5, 2.0, shape).astype(np.float32)
        else:
            out[name] = rng.standard_normal(shape).astype(np.float32) * 0.1
    return out
