"""Read PyTorch checkpoints into numpy arrays without PyTorch and without running pickled code.

``torch.save`` writes either a zip archive (PyTorch >= 1.6: ``<name>/data.pkl`` plus one raw file
per storage under ``<name>/data/``) or, before 1.6, the "legacy" stream: a few small pickles, the
object pickle, the list of storage keys, then each storage as an int64 element count followed by
its raw bytes. Both keep tensors out of the pickle: the pickle refers to a storage by a persistent
id and rebuilds each tensor with ``torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
...)``.

:class:`RestrictedUnpickler` resolves only the few globals needed for that (the tensor rebuild
functions, the storage type names, ``collections.OrderedDict`` and ``_codecs.encode`` for bytes)
to local, side-effect-free stand-ins; any other global (``os.system``, ``builtins.eval``, a
model class ...) raises :class:`pickle.UnpicklingError` naming it, before anything is called.
This is the guarantee of ``torch.load(weights_only=True)``.

The official STDC ImageNet files (``STDCNet813M_73.91.tar``) are such checkpoints despite the
suffix; they are not tar archives.
"""

from __future__ import annotations

import io
import pickle
import struct
import zipfile
from collections import OrderedDict
from pathlib import Path
from typing import Any, BinaryIO, Callable, Dict, Iterable, Optional, Tuple, Union

import numpy as np

#: Storage type name -> numpy dtype ("bfloat16" is read as uint16 and widened to float32).
STORAGE_DTYPES: Dict[str, str] = {
    "FloatStorage": "<f4",
    "DoubleStorage": "<f8",
    "HalfStorage": "<f2",
    "BFloat16Storage": "bfloat16",
    "LongStorage": "<i8",
    "IntStorage": "<i4",
    "ShortStorage": "<i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "?",
    "UntypedStorage": "u1",
}

_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C
_WRAPPER_KEYS = ("state_dict", "model", "params", "model_state_dict", "net")


class TorchCheckpointError(ValueError):
    """The file is not a PyTorch checkpoint this reader understands."""


class _Sealed:
    """Base of the stand-ins a pickle can reach: a BUILD opcode cannot set their state."""

    __slots__ = ()

    def __setstate__(self, state: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set the state of {self!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise pickle.UnpicklingError(f"refusing to set {name} on {self!r}")


class _StorageType(_Sealed):
    """Stand-in for ``torch.FloatStorage`` & co.: only carries the element dtype."""

    __slots__ = ("name", "dtype")

    def __init__(self, name: str) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "dtype", STORAGE_DTYPES[name])

    def __repr__(self) -> str:
        return f"torch.{self.name}"


class _Function(_Sealed):
    """One of our rebuild functions, handed to the pickle fresh for every reference."""

    __slots__ = ("fn", "qualname")

    def __init__(self, fn: Callable[..., Any], qualname: str) -> None:
        object.__setattr__(self, "fn", fn)
        object.__setattr__(self, "qualname", qualname)

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __repr__(self) -> str:
        return self.qualname


class _Storage:
    """A storage referenced by the pickle; ``data`` is a flat numpy array once read."""

    def __init__(self, key: str, dtype: str, numel: Optional[int]) -> None:
        self.key = key
        self.dtype = dtype
        self.numel = numel
        self.data: Optional[np.ndarray] = None

    @property
    def itemsize(self) -> int:
        return 2 if self.dtype == "bfloat16" else np.dtype(self.dtype).itemsize

    def set_bytes(self, raw: bytes) -> None:
        if self.dtype == "bfloat16":
            half = np.frombuffer(raw, dtype="<u2").astype(np.uint32) << 16
            self.data = half.view(np.float32)
        else:
            self.data = np.frombuffer(raw, dtype=np.dtype(self.dtype))


class _View:
    """A legacy (pre-1.6) view into a larger storage: (base, element offset, elements)."""

    def __init__(self, base: _Storage, offset: int, numel: int) -> None:
        self.base, self.offset, self.numel = base, offset, numel


class _TensorRef:
    """What ``_rebuild_tensor_v2`` returns: resolved to an array after all storages are read."""

    def __init__(self, storage, offset: int, size: Tuple[int, ...], stride: Tuple[int, ...]):
        if not isinstance(storage, (_Storage, _View)):
            raise pickle.UnpicklingError(
                f"tensor rebuilt from {type(storage).__name__}, not from a storage"
            )
        self.storage, self.offset = storage, int(offset)
        self.size, self.stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)

    def to_numpy(self) -> np.ndarray:
        storage, offset = self.storage, self.offset
        if isinstance(storage, _View):
            offset += storage.offset
            storage = storage.base
        if storage.data is None:
            raise TorchCheckpointError(f"storage {storage.key} was never read")
        flat = storage.data
        if not self.size:
            return np.array(flat[offset])
        span = 1 + sum((n - 1) * s for n, s in zip(self.size, self.stride) if n > 0)
        if any(n == 0 for n in self.size):
            return np.zeros(self.size, dtype=flat.dtype)
        if offset + span > flat.size:
            raise TorchCheckpointError(
                f"tensor of size {self.size} at offset {offset} overruns storage {storage.key} "
                f"({flat.size} elements)"
            )
        item = flat.itemsize
        view = np.lib.stride_tricks.as_strided(
            flat[offset:], shape=self.size, strides=[s * item for s in self.stride]
        )
        return np.array(view)  # a contiguous, writable copy


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, *_args):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_tensor(storage, storage_offset, size, stride):
    return _TensorRef(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *_args):
    return data


def _codecs_encode(text: str, encoding: str = "latin1") -> bytes:
    if not isinstance(text, str):
        raise pickle.UnpicklingError("_codecs.encode called with a non-string")
    return text.encode(encoding)


#: (module, name) -> factory of the local stand-in. Nothing else can be resolved by a pickle.
#: Every reference gets a fresh, sealed object, so a pickle cannot alter what later loads use.
_ALLOWED: Dict[Tuple[str, str], Callable[[], Any]] = {
    ("collections", "OrderedDict"): lambda: OrderedDict,
    ("torch", "Size"): lambda: tuple,
}
for _name, _fn in (
    ("torch._utils._rebuild_tensor_v2", _rebuild_tensor_v2),
    ("torch._utils._rebuild_tensor", _rebuild_tensor),
    ("torch._utils._rebuild_parameter", _rebuild_parameter),
    ("_codecs.encode", _codecs_encode),
):
    _module, _, _attr = _name.rpartition(".")
    _ALLOWED[(_module, _attr)] = lambda fn=_fn, name=_name: _Function(fn, name)
for _name in STORAGE_DTYPES:
    _ALLOWED[("torch", _name)] = lambda name=_name: _StorageType(name)
_ALLOWED[("torch.storage", "UntypedStorage")] = lambda: _StorageType("UntypedStorage")


class RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that can only rebuild tensors, dicts, lists and plain values.

    ``storage_loader(key, dtype, numel)`` returns the :class:`_Storage` for a persistent id.
    """

    def __init__(self, file: BinaryIO, storage_loader) -> None:
        super().__init__(file, encoding="latin1")
        self._storage_loader = storage_loader

    def find_class(self, module: str, name: str) -> Any:
        try:
            factory = _ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load global {module}.{name}: a weights file may only contain "
                "tensors, dicts, lists and plain values (the pickle tries to construct or call "
                "something else; it was not executed)"
            ) from None
        return factory()

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key, _location, numel = pid[1], str(pid[2]), pid[3], pid[4]
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"persistent id names no storage type: {pid!r}")
        storage = self._storage_loader(key, storage_type.dtype, numel)
        view = pid[5] if len(pid) > 5 else None
        if view is not None:  # legacy view: (view_key, offset, view_size)
            return _View(storage, int(view[1]), int(view[2]))
        return storage


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _TensorRef):
        return obj.to_numpy()
    if isinstance(obj, OrderedDict):
        return OrderedDict((k, _materialize(v)) for k, v in obj.items())
    if isinstance(obj, dict):
        return {k: _materialize(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_materialize(v) for v in obj]
    if isinstance(obj, tuple):
        return tuple(_materialize(v) for v in obj)
    if isinstance(obj, (_Storage, _View)):
        raise TorchCheckpointError("checkpoint holds a bare storage, not a tensor")
    return obj


def _load_zip(zf: zipfile.ZipFile) -> Any:
    names = zf.namelist()
    pkl = [n for n in names if n.endswith("data.pkl") and n.count("/") == 1]
    if not pkl:
        raise TorchCheckpointError("zip file has no <archive>/data.pkl: not a torch checkpoint")
    prefix = pkl[0][: -len("data.pkl")]
    if f"{prefix}byteorder" in names and zf.read(f"{prefix}byteorder").strip() != b"little":
        raise TorchCheckpointError("big-endian torch checkpoints are not supported")
    storages: Dict[str, _Storage] = {}

    def load(key: str, dtype: str, numel) -> _Storage:
        if key not in storages:
            storage = _Storage(key, dtype, numel)
            try:
                storage.set_bytes(zf.read(f"{prefix}data/{key}"))
            except KeyError:
                raise TorchCheckpointError(f"storage data/{key} missing from archive") from None
            storages[key] = storage
        return storages[key]

    with zf.open(pkl[0]) as f:
        obj = RestrictedUnpickler(io.BytesIO(f.read()), load).load()
    return _materialize(obj)


def _load_legacy(f: BinaryIO) -> Any:
    def plain() -> Any:
        return RestrictedUnpickler(f, _no_storage).load()

    if plain() != _LEGACY_MAGIC:
        raise TorchCheckpointError("not a torch checkpoint (no zip header, no legacy magic)")
    plain()  # protocol version
    plain()  # sys info (endianness, type sizes)
    storages: Dict[str, _Storage] = {}

    def load(key: str, dtype: str, numel) -> _Storage:
        if key not in storages:
            storages[key] = _Storage(key, dtype, numel)
        return storages[key]

    obj = RestrictedUnpickler(f, load).load()
    keys = plain()
    for key in keys:
        storage = storages.get(str(key))
        if storage is None:
            raise TorchCheckpointError(f"storage {key} is listed but never referenced")
        (count,) = struct.unpack("<q", f.read(8))
        raw = f.read(count * storage.itemsize)
        if len(raw) != count * storage.itemsize:
            raise TorchCheckpointError(f"file ends inside storage {key}")
        storage.set_bytes(raw)
    return _materialize(obj)


def _no_storage(key, dtype, numel):
    raise pickle.UnpicklingError("storage reference outside the object pickle")


def load_torch_checkpoint(path: Union[str, Path]) -> Any:
    """Unpickle a ``torch.save`` file safely; tensors become numpy arrays."""
    path = Path(path)
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as zf:
            return _load_zip(zf)
    with open(path, "rb") as f:
        try:
            return _load_legacy(f)
        except (EOFError, struct.error) as err:
            raise TorchCheckpointError(f"{path} is truncated or not a torch checkpoint") from err


def _flatten(obj: Dict[str, Any], prefix: str = "") -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, value in obj.items():
        if isinstance(value, dict):
            out.update(_flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _unwrap(obj: Any) -> Dict[str, Any]:
    while isinstance(obj, dict):
        arrays = {k: v for k, v in obj.items() if isinstance(v, np.ndarray)}
        if arrays and len(arrays) >= len(obj) // 2:
            return obj
        inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), dict)), None)
        if inner is None:
            if obj and all(isinstance(v, dict) for v in obj.values()):
                # one state dict per submodule, e.g. {"detail": {...}, "segment": {...}}
                return _flatten(obj)
            break
        obj = inner
    raise TorchCheckpointError(
        "no state dict found (expected a dict of tensors, possibly under one of "
        f"{', '.join(_WRAPPER_KEYS)})"
    )


def strip_prefixes(state: Dict[str, Any], prefixes: Iterable[str] = ("module.",)) -> Dict[str, Any]:
    """Drop a prefix (``module.`` from DataParallel) shared by every key."""
    for prefix in prefixes:
        if state and all(k.startswith(prefix) for k in state):
            state = {k[len(prefix) :]: v for k, v in state.items()}
    return state


def load_torch_state_dict(path: Union[str, Path]) -> Dict[str, np.ndarray]:
    """The tensors of a checkpoint's state dict, unwrapped and without a ``module.`` prefix.

    Non-tensor entries (e.g. ``num_batches_tracked`` stored as ints) are dropped only if they are
    not arrays; tensors keep their dtype.
    """
    state = _unwrap(load_torch_checkpoint(path))
    state = {str(k): v for k, v in state.items() if isinstance(v, np.ndarray)}
    return strip_prefixes(state)
