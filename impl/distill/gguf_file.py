"""The GGUF container: a fast header parser (metadata, value types, tensor infos).

The parser is our own (``gguf.GGUFReader`` builds a numpy view per string and
needs seconds for a 150k-token vocabulary); it uses the constants of the
``gguf`` package, whose reader and writer are the reference in the tests.
Numeric metadata arrays are read-only numpy views of the memory-mapped file, as
tensors are: a header that declares a huge array costs no memory, and one whose
array runs past the end of the file is refused before anything is allocated.
"""

from __future__ import annotations

import math
import mmap
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGMLQuantizationType,
    GGUFValueType,
)

from distill.errors import GGUFFormatError
from distill.inputs import open_input

SUPPORTED_VERSIONS = (2, 3)
#: The largest GGUF file opened (it is memory-mapped, not read whole), in bytes.
MAX_GGUF_BYTES = 1024**4

#: struct format of each fixed-size GGUF value type (little-endian)
_SCALAR_FORMATS: dict[GGUFValueType, str] = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<?",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
#: numpy dtype of each fixed-size GGUF value type, for arrays (little-endian)
_ARRAY_DTYPES: dict[GGUFValueType, np.dtype] = {vtype: np.dtype(fmt) for vtype, fmt in _SCALAR_FORMATS.items()}
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


@dataclass(frozen=True)
class TensorEntry:
    """One tensor info record of a GGUF header (ggml order dims, offset from the data start)."""

    name: str
    qtype: GGMLQuantizationType
    ggml_shape: tuple[int, ...]
    offset: int


@dataclass
class GGUFHeader:
    """Everything before the tensor data: metadata, value types, tensor infos, data offset."""

    path: Path
    version: int
    metadata: dict[str, Any]
    value_types: dict[str, tuple[GGUFValueType, GGUFValueType | None]]
    tensors: list[TensorEntry]
    alignment: int
    data_offset: int
    file_size: int


class _Parser:
    """A bounds-checked cursor over the bytes of one GGUF file."""

    def __init__(self, path: Path, buf: bytes | mmap.mmap) -> None:
        self.path = path
        self.buf = buf
        self.size = len(buf)
        self.pos = 0
        self.view: np.ndarray | None = None

    def fail(self, what: str) -> GGUFFormatError:
        return GGUFFormatError(f"{self.path}: {what}")

    def need(self, n: int, what: str) -> None:
        if self.pos + n > self.size:
            raise self.fail(
                f"truncated: {what} needs {n} bytes at offset {self.pos}, "
                f"but the file has {self.size} bytes"
            )

    def u32(self, what: str) -> int:
        self.need(4, what)
        (value,) = _U32.unpack_from(self.buf, self.pos)
        self.pos += 4
        return int(value)

    def u64(self, what: str) -> int:
        self.need(8, what)
        (value,) = _U64.unpack_from(self.buf, self.pos)
        self.pos += 8
        return int(value)

    def string(self, what: str) -> str:
        n = self.u64(what)
        self.need(n, what)
        raw = self.buf[self.pos : self.pos + n]
        self.pos += n
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as err:
            raise self.fail(f"{what} is not valid UTF-8 ({err.reason} at byte {err.start})") from None

    def value_type(self, what: str) -> GGUFValueType:
        raw = self.u32(what)
        try:
            return GGUFValueType(raw)
        except ValueError:
            raise self.fail(f"{what} has unknown value type {raw}") from None

    def scalar(self, vtype: GGUFValueType, what: str) -> Any:
        if vtype == GGUFValueType.STRING:
            return self.string(what)
        fmt = _SCALAR_FORMATS.get(vtype)
        if fmt is None:
            raise self.fail(f"{what}: nested arrays are not supported")
        n = struct.calcsize(fmt)
        self.need(n, what)
        (value,) = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return value

    def array(self, what: str) -> tuple[list[str] | np.ndarray, GGUFValueType]:
        """A metadata array: a list of str, or a read-only numpy view of the file for numbers."""
        item_type = self.value_type(f"{what} (array item type)")
        count = self.u64(f"{what} (array length)")
        if item_type == GGUFValueType.STRING:
            if count * 8 > self.size - self.pos:  # each string takes at least its 8-byte length
                raise self.fail(f"truncated: {what} declares {count} strings but the file ends after "
                                f"{(self.size - self.pos) // 8} of them at most (each takes at least 8 bytes)")
            return self._string_array(count, what), item_type
        dtype = _ARRAY_DTYPES.get(item_type)
        if dtype is None:
            raise self.fail(f"{what}: arrays of {item_type.name} are not supported")
        n = dtype.itemsize * count
        self.need(n, what)
        values = self.file_view()[self.pos : self.pos + n].view(dtype)
        self.pos += n
        return values, item_type

    def file_view(self) -> np.ndarray:
        """The whole file as read-only uint8, one mapping shared by every array view."""
        if self.view is None:
            self.view = np.memmap(self.path, dtype=np.uint8, mode="r") if self.size else np.zeros(0, np.uint8)
        return self.view

    def _string_array(self, count: int, what: str) -> list[str]:
        """The hot loop of a vocabulary file: ``count`` length-prefixed UTF-8 strings."""
        buf, pos, size, unpack = self.buf, self.pos, self.size, _U64.unpack_from
        out: list[str] = []
        append = out.append
        try:
            for _ in range(count):
                (n,) = unpack(buf, pos)
                pos += 8
                end = pos + n
                if end > size:
                    break
                append(buf[pos:end].decode("utf-8"))
                pos = end
        except struct.error:
            pass
        except UnicodeDecodeError as err:
            raise self.fail(f"{what}[{len(out)}] is not valid UTF-8 ({err.reason})") from None
        if len(out) != count:
            self.pos = pos
            raise self.fail(
                f"truncated: {what} declares {count} strings but the file ends after {len(out)}"
            )
        self.pos = pos
        return out


def _parse_header(path: Path, buf: bytes | mmap.mmap) -> GGUFHeader:
    p = _Parser(path, buf)
    p.need(4, "the magic")
    magic = bytes(buf[0:4])
    if _U32.unpack(magic)[0] != GGUF_MAGIC:
        raise p.fail(f"not a GGUF file: magic is {magic!r}, expected b'GGUF'")
    p.pos = 4
    version = p.u32("the version")
    if version not in SUPPORTED_VERSIONS:
        raise p.fail(f"GGUF version {version} is not supported (expected one of {SUPPORTED_VERSIONS})")
    n_tensors = p.u64("the tensor count")
    n_kv = p.u64("the metadata count")
    left = p.size - p.pos
    if n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_INFO_BYTES > left:
        raise p.fail(f"truncated: the header declares {n_kv} metadata keys and {n_tensors} tensors,"
                     f" which need more than the {left} bytes left in the file")

    metadata: dict[str, Any] = {}
    value_types: dict[str, tuple[GGUFValueType, GGUFValueType | None]] = {}
    for index in range(n_kv):
        key = p.string(f"metadata key #{index}")
        if key in metadata:
            raise p.fail(f"metadata key {key!r} appears twice")
        vtype = p.value_type(f"metadata key {key!r}")
        if vtype == GGUFValueType.ARRAY:
            metadata[key], item_type = p.array(f"metadata key {key!r}")
            value_types[key] = (vtype, item_type)
        else:
            metadata[key] = p.scalar(vtype, f"metadata key {key!r}")
            value_types[key] = (vtype, None)

    tensors: list[TensorEntry] = []
    names: set[str] = set()
    for index in range(n_tensors):
        name = p.string(f"tensor info #{index} (name)")
        if name in names:
            raise p.fail(f"tensor {name!r} appears twice")
        names.add(name)
        n_dims = p.u32(f"tensor {name!r} (dimension count)")
        if not 1 <= n_dims <= 4:
            raise p.fail(f"tensor {name!r} has {n_dims} dimensions, expected 1 to 4")
        dims = tuple(p.u64(f"tensor {name!r} (dimensions)") for _ in range(n_dims))
        raw_type = p.u32(f"tensor {name!r} (type)")
        try:
            qtype = GGMLQuantizationType(raw_type)
        except ValueError:
            raise p.fail(f"tensor {name!r} has unknown quantization type {raw_type}") from None
        offset = p.u64(f"tensor {name!r} (offset)")
        tensors.append(TensorEntry(name, qtype, dims, offset))

    alignment = metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
    if type(alignment) is not int or alignment <= 0 or alignment & (alignment - 1):
        raise p.fail(f"metadata key 'general.alignment' is {alignment!r}, expected an integer power of two")
    data_offset = -(-p.pos // alignment) * alignment
    for entry in tensors:
        _check_extent(p, entry, data_offset)
    return GGUFHeader(path, version, metadata, value_types, tensors, alignment, data_offset, p.size)


#: Fewest bytes of one metadata entry (key length, value type, a one-byte value) and of one tensor info.
_MIN_KV_BYTES = 8 + 4 + 1
_MIN_TENSOR_INFO_BYTES = 8 + 4 + 8 + 4 + 8


def _check_extent(p: _Parser, entry: TensorEntry, data_offset: int) -> None:
    """A tensor's dimensions are positive and its bytes (at least whole blocks of its type)
    lie inside the file: checked before anything is allocated from what the header declares."""
    if any(dim == 0 for dim in entry.ggml_shape):
        raise p.fail(f"tensor {entry.name!r} has a zero dimension (ggml dimensions {entry.ggml_shape})")
    block, block_bytes = GGML_QUANT_SIZES.get(entry.qtype, (1, 1))
    nbytes = math.prod(entry.ggml_shape) // block * block_bytes
    start = data_offset + entry.offset
    if start + nbytes > p.size:
        shape = tuple(reversed(entry.ggml_shape))
        raise p.fail(f"truncated: tensor {entry.name!r} ({entry.qtype.name}, shape {shape}) needs bytes "
                     f"{start}..{start + nbytes} but the file has {p.size} bytes")


def _open_map(path: str | Path) -> tuple[Path, mmap.mmap | bytes]:
    path = Path(path)
    with open_input(path, "a GGUF file", MAX_GGUF_BYTES, GGUFFormatError) as fh:
        size = fh.seek(0, 2)
        if size == 0:
            return path, b""
        try:
            return path, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        except OSError as err:
            raise GGUFFormatError(f"{path}: cannot read: {err.strerror or err}") from None


def read_header(path: str | Path) -> GGUFHeader:
    """Parse the header of a GGUF file (metadata and tensor infos); no tensor data is read."""
    path, buf = _open_map(path)
    try:
        return _parse_header(path, buf)
    finally:
        if isinstance(buf, mmap.mmap):
            buf.close()


def read_metadata(path: str | Path) -> dict[str, Any]:
    """All metadata key/value pairs of a GGUF file, in file order: string arrays as lists of str,
    numeric arrays as read-only numpy views of the file."""
    return read_header(path).metadata
