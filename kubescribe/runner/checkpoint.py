"""A reader of PyTorch's legacy checkpoint format (`torch.save` before PyTorch 1.6) that gives its tensors as numpy
arrays, without PyTorch.

The file is five pickles in a row (a magic number, the format's version, the writer's byte order, the object, the
keys of its storages) followed by each storage's bytes, in the order of those keys: an 8-byte little-endian count of
elements, then the elements. The object's pickle names only a few globals (an OrderedDict, float storages and the
function that rebuilds a tensor from a storage, an offset, a size and strides); the unpickler builds those into
numpy and refuses every other global, so a checkpoint cannot make it run anything.
"""

from __future__ import annotations

import io
import pickle
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
PROTOCOL_VERSION = 1001
STORAGE_TYPES: dict[str, np.dtype[Any]] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "LongStorage": np.dtype("<i8"),
}


class CheckpointError(ValueError):
    """The file is not a legacy PyTorch checkpoint this reader can read."""


@dataclass(frozen=True)
class _StorageType:
    dtype: np.dtype[Any]


@dataclass(frozen=True)
class _Storage:
    key: str
    dtype: np.dtype[Any]
    size: int


@dataclass(frozen=True)
class _TensorView:
    """A tensor before its storage's bytes are read."""

    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    strides: tuple[int, ...]


def _rebuild_tensor(storage: _Storage, offset: int, shape: tuple[int, ...], strides: tuple[int, ...], *_: Any) -> Any:
    if not isinstance(storage, _Storage) or not all(isinstance(n, int) for n in (offset, *shape, *strides)):
        raise CheckpointError("a tensor is not built from a storage, an offset, a size and strides")
    return _TensorView(storage, offset, tuple(shape), tuple(strides))


_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
    **{("torch", name): _StorageType(dtype) for name, dtype in STORAGE_TYPES.items()},
}


class _Unpickler(pickle.Unpickler):
    def __init__(self, file: BinaryIO) -> None:
        super().__init__(file)
        self.storages: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _GLOBALS[(module, name)]
        except KeyError:
            raise CheckpointError(f"the checkpoint names {module}.{name}, which this reader does not build") from None

    def persistent_load(self, pid: Any) -> _Storage:
        match pid:
            case ("storage", _StorageType(dtype=dtype), str(key), str(), int(size), None) if size >= 0:
                storage = self.storages.setdefault(key, _Storage(key, dtype, size))
                if storage.dtype != dtype or storage.size != size:
                    raise CheckpointError(f"storage {key} is described twice, differently")
                return storage
        raise CheckpointError("a persistent id is not a plain storage")


def _load_plain(file: BinaryIO) -> Any:
    """One of the header pickles, which hold only numbers, strings, and dicts of them."""
    return _Unpickler(file).load()


def read_checkpoint(data: bytes) -> Any:
    """The checkpoint's object, with its tensors as numpy arrays."""
    try:
        return _read(io.BytesIO(data))
    except CheckpointError:
        raise
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, IndexError, AttributeError) as error:
        raise CheckpointError(f"not a legacy PyTorch checkpoint: {type(error).__name__}: {error}") from None


def _read(file: BinaryIO) -> Any:
    if _load_plain(file) != MAGIC_NUMBER:
        raise CheckpointError("the file does not start with PyTorch's magic number")
    if _load_plain(file) != PROTOCOL_VERSION:
        raise CheckpointError("the checkpoint's format version is not 1001")
    system = _load_plain(file)
    if not isinstance(system, dict) or not system.get("little_endian"):
        raise CheckpointError("the checkpoint was not written on a little-endian machine")
    unpickler = _Unpickler(file)
    document = unpickler.load()
    keys = _load_plain(file)
    if not isinstance(keys, list) or sorted(keys) != sorted(unpickler.storages):
        raise CheckpointError("the checkpoint's storage keys do not match its tensors")
    data = {key: _read_storage(file, unpickler.storages[key]) for key in keys}
    return _arrays(document, data)


def _read_storage(file: BinaryIO, storage: _Storage) -> np.ndarray[Any, Any]:
    count = int.from_bytes(file.read(8), "little")
    if count != storage.size:
        raise CheckpointError(f"storage {storage.key} holds {count} elements, not {storage.size}")
    raw = file.read(count * storage.dtype.itemsize)
    if len(raw) != count * storage.dtype.itemsize:
        raise CheckpointError(f"storage {storage.key} is cut short")
    return np.frombuffer(raw, dtype=storage.dtype)


def _arrays(value: Any, data: dict[str, np.ndarray[Any, Any]]) -> Any:
    if isinstance(value, _TensorView):
        return _tensor(value, data[value.storage.key])
    if isinstance(value, dict):
        return type(value)((key, _arrays(item, data)) for key, item in value.items())
    if isinstance(value, list | tuple):
        return type(value)(_arrays(item, data) for item in value)
    return value


def _tensor(view: _TensorView, storage: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """The tensor's elements, checked to lie inside its storage."""
    if len(view.shape) != len(view.strides) or min((*view.shape, *view.strides, view.offset), default=0) < 0:
        raise CheckpointError("a tensor has a negative size, stride or offset")
    last = view.offset + sum((n - 1) * stride for n, stride in zip(view.shape, view.strides, strict=True))
    if 0 in view.shape:
        return np.zeros(view.shape, dtype=storage.dtype)
    if last >= storage.size:
        raise CheckpointError("a tensor reaches past the end of its storage")
    itemsize = storage.dtype.itemsize
    array = np.lib.stride_tricks.as_strided(
        storage[view.offset :], shape=view.shape, strides=tuple(stride * itemsize for stride in view.strides)
    )
    return np.array(array)
