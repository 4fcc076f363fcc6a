"""GGUF v3 I/O: a planned streaming writer, split-file naming, and an mmap reader (one model over shards).

The writer serializes the header (KVs + tensor infos) from a plan, so every tensor's offset is known
before any data exists; tensors are then streamed in plan order with ggml's padding (what llama.cpp's
loader requires).  Reading parses the header itself over an mmap (zero-copy numpy views of the tensor
data), with ggml's checks and split-awareness; the `gguf` package's ``GGUFReader`` is not used (it takes
5-10 s on a 129k-token vocabulary).  It does not quantize and knows nothing about DeepSeek names.
"""

from __future__ import annotations

import mmap
import os
import re
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from gguf import GGML_QUANT_SIZES, GGMLQuantizationType, GGUFValueType

from .constants import GGUF_DEFAULT_ALIGNMENT, KEY_SPLIT_COUNT, KEY_SPLIT_NO, KEY_SPLIT_TENSORS_COUNT

__all__ = [
    "GGUFError",
    "KV",
    "TensorEntry",
    "encode_header",
    "tensor_nbytes",
    "split_groups",
    "split_paths",
    "GGUFFile",
    "GGUFShards",
    "write_plain",
]

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3


class GGUFError(ValueError):
    """A GGUF file is malformed, incomplete or not the model it should be."""


# A file cut short (or a header that claims more than the file holds): what the error says and the fix.
_TRUNCATED, _REFETCH = "truncated or corrupt GGUF", "re-download or re-convert it"


# Limits on what a header may claim (far above any real model), so a crafted file is rejected before the
# reader allocates what it asks for.  Mirrored in csrc/runtime/gguf_file.h (a test checks they are equal).
MAX_TENSORS = 1 << 20  # tensor infos per file
MAX_KEYS = 1 << 16  # metadata pairs per file
MAX_STRING = 1 << 26  # bytes of one string (key, value, array entry)
MAX_ARRAY = 1 << 22  # entries of one metadata array
MAX_METADATA_BYTES = 1 << 28  # bytes from the file start to the end of the metadata
MAX_TENSOR_NAME = 63  # ggml's GGML_MAX_NAME - 1
MAX_ALIGNMENT = 1 << 20


@dataclass(frozen=True)
class KV:
    """One metadata pair.  ``vtype``: u8 i8 u16 i16 u32 i32 u64 i64 f32 f64 bool str, or ``T[]``."""

    key: str
    vtype: str
    value: Any


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a file: numpy-order logical ``shape`` (ggml ``ne`` reversed) and storage type."""

    name: str
    shape: tuple[int, ...]
    qtype: GGMLQuantizationType

    @property
    def nbytes(self) -> int:
        return tensor_nbytes(self.shape, self.qtype)


_SCALAR = {
    "u8": (GGUFValueType.UINT8, "<B"),
    "i8": (GGUFValueType.INT8, "<b"),
    "u16": (GGUFValueType.UINT16, "<H"),
    "i16": (GGUFValueType.INT16, "<h"),
    "u32": (GGUFValueType.UINT32, "<I"),
    "i32": (GGUFValueType.INT32, "<i"),
    "u64": (GGUFValueType.UINT64, "<Q"),
    "i64": (GGUFValueType.INT64, "<q"),
    "f32": (GGUFValueType.FLOAT32, "<f"),
    "f64": (GGUFValueType.FLOAT64, "<d"),
    "bool": (GGUFValueType.BOOL, "<?"),
}


def tensor_nbytes(shape: Sequence[int], qtype: GGMLQuantizationType) -> int:
    try:
        block, size = GGML_QUANT_SIZES[GGMLQuantizationType(qtype)]
    except (KeyError, ValueError):
        raise GGUFError(f"ggml type {int(qtype)} has no known block size") from None
    n = 1
    for d in shape:
        n *= int(d)
    if shape and shape[-1] % block:
        raise GGUFError(
            f"row length {shape[-1]} is not a multiple of the {GGMLQuantizationType(qtype).name} block size {block}"
        )
    return n // block * size


def _str(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def _encode_kv(kv: KV) -> bytes:
    out = [_str(kv.key)]
    if kv.vtype == "str":
        out += [struct.pack("<i", GGUFValueType.STRING), _str(str(kv.value))]
    elif kv.vtype.endswith("[]"):
        et = kv.vtype[:-2]
        vals = kv.value if isinstance(kv.value, np.ndarray) else list(kv.value)
        out.append(struct.pack("<i", GGUFValueType.ARRAY))
        if et == "str":
            out.append(struct.pack("<iQ", GGUFValueType.STRING, len(vals)))
            out.append(b"".join(_str(v) for v in vals))
        else:
            gt, fmt = _SCALAR[et]
            out.append(struct.pack("<iQ", gt, len(vals)))
            out.append(np.asarray(vals, dtype=np.dtype(fmt)).tobytes())
    else:
        gt, fmt = _SCALAR[kv.vtype]
        out += [struct.pack("<i", gt), struct.pack(fmt, kv.value)]
    return b"".join(out)


def _pad(n: int, align: int) -> int:
    return -n % align


def encode_header(
    kvs: Sequence[KV], tensors: Sequence[TensorEntry], alignment: int = GGUF_DEFAULT_ALIGNMENT
) -> tuple[bytes, list[int]]:
    """Header bytes (padded to ``alignment``) and the absolute file offset of every tensor's data."""
    keys = [kv.key for kv in kvs]
    if len(set(keys)) != len(keys):
        raise GGUFError(f"duplicate metadata keys: {sorted({k for k in keys if keys.count(k) > 1})}")
    names = [t.name for t in tensors]
    if len(set(names)) != len(names):
        raise GGUFError("duplicate tensor names in the plan")
    parts = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(kvs))]
    parts += [_encode_kv(kv) for kv in kvs]
    rel, off = [], 0
    for t in tensors:
        if len(t.name.encode()) > 63:
            raise GGUFError(f"tensor name '{t.name}' is longer than ggml's 63-byte limit")
        ne = list(reversed(t.shape)) or [1]
        parts.append(
            _str(t.name)
            + struct.pack("<I", len(ne))
            + struct.pack(f"<{len(ne)}q", *ne)
            + struct.pack("<iQ", int(t.qtype), off)
        )
        rel.append(off)
        off += t.nbytes + _pad(t.nbytes, alignment)
    head = b"".join(parts)
    head += b"\0" * _pad(len(head), alignment)
    return head, [len(head) + r for r in rel]


def split_groups(tensors: Sequence[TensorEntry], max_bytes: int = 0, max_tensors: int = 0) -> list[list[int]]:
    """Consecutive tensor index groups, gguf-split style: a new shard starts when adding a tensor would
    pass ``max_bytes`` (or ``max_tensors``).  0 = no limit; one group means no split."""
    groups: list[list[int]] = [[]]
    size = 0
    for i, t in enumerate(tensors):
        g = groups[-1]
        if g and ((max_bytes and size + t.nbytes > max_bytes) or (max_tensors and len(g) >= max_tensors)):
            groups.append([])
            size = 0
        groups[-1].append(i)
        size += t.nbytes
    return groups


def split_paths(path: str | os.PathLike[str], count: int) -> list[Path]:
    """llama.cpp's names: ``OUT.gguf`` -> ``OUT-00001-of-0000N.gguf`` (unchanged when ``count == 1``)."""
    p = Path(path)
    if count == 1:
        return [p]
    prefix = str(p.with_suffix("")) if p.suffix == ".gguf" else str(p)
    return [Path(f"{prefix}-{i + 1:05d}-of-{count:05d}.gguf") for i in range(count)]


def split_kvs(no: int, count: int, n_tensors_total: int) -> list[KV]:
    return [
        KV(KEY_SPLIT_NO, "u16", no),
        KV(KEY_SPLIT_COUNT, "u16", count),
        KV(KEY_SPLIT_TENSORS_COUNT, "i32", n_tensors_total),
    ]


def write_plain(
    path: str | os.PathLike[str],
    kvs: Sequence[KV],
    tensors: Sequence[tuple[TensorEntry, np.ndarray]],
    alignment: int = GGUF_DEFAULT_ALIGNMENT,
) -> None:
    """Small in-memory writer (tests, imatrix files): tensors given as arrays of their exact bytes."""
    head, offs = encode_header(kvs, [t for t, _ in tensors], alignment)
    with open(path, "wb") as f:
        f.write(head)
        for (t, arr), off in zip(tensors, offs, strict=True):
            b = np.ascontiguousarray(arr).tobytes()
            if len(b) != t.nbytes or f.tell() != off:
                raise GGUFError(f"{t.name}: {len(b)} bytes given, {t.nbytes} planned")
            f.write(b + b"\0" * _pad(len(b), alignment))


# ---------------------------------------------------------------------------------------------
# reading


@dataclass(frozen=True)
class TensorRef:
    name: str
    qtype: GGMLQuantizationType
    shape: tuple[int, ...]  # numpy order (ggml ne reversed)
    nbytes: int
    file: Path
    offset: int  # absolute


_NP_SCALAR = {
    GGUFValueType.UINT8: "<u1",
    GGUFValueType.INT8: "<i1",
    GGUFValueType.UINT16: "<u2",
    GGUFValueType.INT16: "<i2",
    GGUFValueType.UINT32: "<u4",
    GGUFValueType.INT32: "<i4",
    GGUFValueType.FLOAT32: "<f4",
    GGUFValueType.BOOL: "<u1",
    GGUFValueType.UINT64: "<u8",
    GGUFValueType.INT64: "<i8",
    GGUFValueType.FLOAT64: "<f8",
}
_STRUCT = {
    GGUFValueType.UINT8: "<B",
    GGUFValueType.INT8: "<b",
    GGUFValueType.UINT16: "<H",
    GGUFValueType.INT16: "<h",
    GGUFValueType.UINT32: "<I",
    GGUFValueType.INT32: "<i",
    GGUFValueType.FLOAT32: "<f",
    GGUFValueType.BOOL: "<B",
    GGUFValueType.UINT64: "<Q",
    GGUFValueType.INT64: "<q",
    GGUFValueType.FLOAT64: "<d",
}
_TYPED = {
    GGMLQuantizationType.F32: np.float32,
    GGMLQuantizationType.F16: np.float16,
    GGMLQuantizationType.I8: np.int8,
    GGMLQuantizationType.I16: np.int16,
    GGMLQuantizationType.I32: np.int32,
    GGMLQuantizationType.I64: np.int64,
    GGMLQuantizationType.F64: np.float64,
}


_U64 = struct.Struct("<Q")


class _Cursor:
    def __init__(self, buf: Any, path: Path):
        self.buf, self.pos, self.path = buf, 0, path
        self.last_len = 0
        self.last_array_type = -1

    def take(self, fmt: str) -> tuple:
        n = struct.calcsize(fmt)
        if self.pos + n > len(self.buf):
            raise GGUFError(
                f"{self.path}: {_TRUNCATED}: the header needs {self.pos + n} bytes, the file has {len(self.buf)}; "
                f"{_REFETCH}"
            )
        v = struct.unpack_from(fmt, self.buf, self.pos)
        self.pos += n
        return v

    def string(self, what: str) -> str:
        (n,) = self.take("<Q")
        if n > MAX_STRING:
            raise GGUFError(
                f"{self.path}: {what} at byte {self.pos - 8} claims {n} bytes (limit {MAX_STRING}); the file is corrupt"
            )
        if self.pos + n > len(self.buf):
            raise GGUFError(
                f"{self.path}: {_TRUNCATED}: {what} (a string of {n} bytes at byte {self.pos}) runs past the end of "
                f"the file ({len(self.buf)} bytes); {_REFETCH}"
            )
        b = bytes(self.buf[self.pos : self.pos + n])
        self.pos += n
        self.last_len = n  # in bytes, before invalid UTF-8 is replaced
        return b.decode("utf-8", "replace")

    def strings(self, n: int, key: str) -> list[str]:
        """``n`` strings in a row: the checks of :meth:`string` in one local loop (a 129k-token vocabulary
        and its merges are ~260k strings; per-call overhead was most of the header's read time)."""
        buf, pos, end, out = self.buf, self.pos, len(self.buf), []
        length = _U64.unpack_from
        for _ in range(n):
            if pos + 8 > end:
                raise GGUFError(
                    f"{self.path}: {_TRUNCATED}: the header needs {pos + 8} bytes, the file has {end}; {_REFETCH}"
                )
            (k,) = length(buf, pos)
            if k > MAX_STRING:
                raise GGUFError(
                    f"{self.path}: entry of '{key}' at byte {pos} claims {k} bytes (limit {MAX_STRING}); "
                    f"the file is corrupt"
                )
            pos += 8
            if pos + k > end:
                raise GGUFError(
                    f"{self.path}: {_TRUNCATED}: an entry of '{key}' (a string of {k} bytes at byte {pos}) runs past "
                    f"the end of the file ({end} bytes); {_REFETCH}"
                )
            out.append(buf[pos : pos + k].decode("utf-8", "replace"))
            pos += k
        self.pos = pos
        return out

    def value(self, vt: int, key: str) -> Any:
        if vt == GGUFValueType.STRING:
            return self.string(f"value of '{key}'")
        if vt == GGUFValueType.ARRAY:
            et, n = self.take("<iQ")
            self.last_array_type = et
            if n > MAX_ARRAY:
                raise GGUFError(
                    f"{self.path}: key '{key}' is an array of {n} entries (limit {MAX_ARRAY}); the file is corrupt"
                )
            if et == GGUFValueType.STRING:
                if self.pos + 8 * n > len(self.buf):  # every entry has at least its 8-byte length
                    raise GGUFError(
                        f"{self.path}: {_TRUNCATED}: array '{key}' of {n} strings runs past the end of the file "
                        f"({len(self.buf)} bytes); {_REFETCH}"
                    )
                return self.strings(n, key)
            if et not in _NP_SCALAR:
                raise GGUFError(
                    f"{self.path}: key '{key}' is an array of unknown or nested type {et}; the file is corrupt"
                )
            dt = np.dtype(_NP_SCALAR[GGUFValueType(et)])
            if self.pos + n * dt.itemsize > len(self.buf):
                raise GGUFError(
                    f"{self.path}: {_TRUNCATED}: array '{key}' needs {self.pos + n * dt.itemsize} bytes, the file has "
                    f"{len(self.buf)}; {_REFETCH}"
                )
            a = np.frombuffer(self.buf, dt, n, self.pos).copy()
            self.pos += n * dt.itemsize
            return a.astype(bool).tolist() if et == GGUFValueType.BOOL else a.tolist()
        if vt not in _NP_SCALAR:
            raise GGUFError(
                f"{self.path}: key '{key}' has unknown value type {vt} (GGUF defines 0..12); the file "
                f"is corrupt or from a newer format"
            )
        (v,) = self.take(_STRUCT[GGUFValueType(vt)])
        return bool(v) if vt == GGUFValueType.BOOL else v


class GGUFFile:
    """One GGUF file over a read-only memory map.  Its own header parser (the `gguf` package's
    ``GGUFReader`` takes ~8 s on a 129k-token vocabulary); checks offsets, sizes and types like ggml and
    the limits above (errors name the file and the key or tensor)."""

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        if not self.path.is_file():
            raise GGUFError(f"{self.path}: file not found")
        with open(self.path, "rb") as fh:
            size = os.fstat(fh.fileno()).st_size
            if size < 24:
                raise GGUFError(f"{self.path}: {size} bytes is too short for a GGUF file")
            self._mm = mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ)
        p = self.path
        c = _Cursor(self._mm, p)
        if bytes(self._mm[:4]) != GGUF_MAGIC:
            raise GGUFError(f"{p}: not a GGUF file (magic {bytes(self._mm[:4])!r})")
        version, n_tensors, n_kv = struct.unpack_from("<IQQ", self._mm, 4)
        c.pos = 24
        if version not in (2, 3):
            raise GGUFError(f"{p}: GGUF version {version} is not supported (2 or 3)")
        if n_tensors > MAX_TENSORS:
            raise GGUFError(f"{p}: header claims {n_tensors} tensors (limit {MAX_TENSORS}); the file is corrupt")
        if n_kv > MAX_KEYS:
            raise GGUFError(f"{p}: header claims {n_kv} metadata keys (limit {MAX_KEYS}); the file is corrupt")
        self.metadata: dict[str, Any] = {}
        self.kv_types: dict[str, int] = {}
        self.array_types: dict[str, int] = {}  # element type of each array key
        for _ in range(n_kv):
            key = c.string("metadata key")
            (vt,) = c.take("<i")
            value = c.value(vt, key)
            if c.pos > MAX_METADATA_BYTES:
                raise GGUFError(
                    f"{p}: metadata runs past {MAX_METADATA_BYTES} bytes (at key '{key}'); the file is corrupt"
                )
            if key in self.metadata:
                raise GGUFError(f"{p}: duplicate metadata key '{key}'; the file is corrupt")
            self.metadata[key] = value
            self.kv_types[key] = vt
            if vt == GGUFValueType.ARRAY:
                self.array_types[key] = c.last_array_type
        align = self.metadata.get("general.alignment", GGUF_DEFAULT_ALIGNMENT)
        if (
            isinstance(align, bool)
            or not isinstance(align, int)
            or align <= 0
            or align & (align - 1)
            or align > MAX_ALIGNMENT
        ):
            raise GGUFError(f"{p}: general.alignment = {align!r} is not a power of two in 1..{MAX_ALIGNMENT}")
        infos = []
        for _ in range(n_tensors):
            name = c.string("tensor name")
            if c.last_len > MAX_TENSOR_NAME:
                raise GGUFError(f"{p}: tensor name '{name[:80]}' is longer than ggml's {MAX_TENSOR_NAME}-byte limit")
            (nd,) = c.take("<I")
            if not 1 <= nd <= 4:
                raise GGUFError(f"{p}: tensor '{name}' has {nd} dimensions (1..4 allowed)")
            ne = c.take(f"<{nd}q")
            for d, n in enumerate(ne):
                if n < 0:
                    raise GGUFError(f"{p}: tensor '{name}' has dimension {d} = {n} (must not be negative)")
            if np.prod(ne, dtype=object) > np.iinfo(np.int64).max:
                raise GGUFError(
                    f"{p}: tensor '{name}': element count of {list(ne)} overflows int64; the header is corrupt"
                )
            qt, off = c.take("<iQ")
            try:
                qtype = GGMLQuantizationType(qt)
            except ValueError:
                raise GGUFError(f"{p}: tensor '{name}' has unknown ggml type {qt}") from None
            if off % align:
                raise GGUFError(
                    f"{p}: tensor '{name}' has data offset {off}, not a multiple of the alignment "
                    f"{align} (misaligned data)"
                )
            infos.append((name, tuple(int(d) for d in reversed(ne)), qtype, off))
        data0 = c.pos + (-c.pos % align)
        self.tensors: dict[str, TensorRef] = {}
        expect = 0
        for name, shape, qtype, off in infos:
            if name in self.tensors:
                raise GGUFError(f"{p}: duplicate tensor '{name}'")
            try:
                nb = tensor_nbytes(shape, qtype)
            except GGUFError as e:
                raise GGUFError(f"{p}: tensor '{name}': {e}") from None
            if off != expect:
                raise GGUFError(
                    f"{p}: tensor '{name}' has offset {off}, expected {expect} (ggml requires "
                    f"tensor data in info order, padded to {align})"
                )
            if data0 + off + nb > size:
                raise GGUFError(
                    f"{p}: {_TRUNCATED}: tensor '{name}' runs past the end of the file (needs {data0 + off + nb} "
                    f"bytes, the file has {size}); {_REFETCH}"
                )
            self.tensors[name] = TensorRef(name, qtype, shape, nb, p, data0 + off)
            expect = off + nb + (-nb % align)

    def ref(self, name: str) -> TensorRef:
        return self.tensors[name]

    def raw(self, name: str) -> np.ndarray:
        """Zero-copy read-only view: typed for F32/F16/I*, uint8 ``[..., row_bytes]`` for BF16 and block types."""
        t = self.tensors[name]
        dt = _TYPED.get(t.qtype)
        if dt is not None:
            return np.frombuffer(self._mm, dt, t.nbytes // np.dtype(dt).itemsize, t.offset).reshape(t.shape)
        a = np.frombuffer(self._mm, np.uint8, t.nbytes, t.offset)
        if not t.shape:
            return a
        return a.reshape(*t.shape[:-1], tensor_nbytes(t.shape[-1:], t.qtype))


class GGUFShards:
    """A model in one file or in gguf-split shards (``*-00001-of-0000N.gguf``), read as one."""

    _SPLIT_RE = re.compile(r"^(?P<prefix>.*)-(?P<no>\d{5})-of-(?P<count>\d{5})\.gguf$")

    def __init__(self, path: str | os.PathLike[str]):
        first = GGUFFile(path)
        count = first.metadata.get(KEY_SPLIT_COUNT, 1)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise GGUFError(f"{first.path}: {KEY_SPLIT_COUNT} = {count!r} is not a shard count")
        self.files = [first]
        if count > 1:
            m = self._SPLIT_RE.match(str(first.path))
            if count > 99999:
                raise GGUFError(f"{first.path}: split.count = {count} is not a valid shard count (1..99999)")
            if not m or int(m.group("no")) != 1 or int(m.group("count")) != count:
                raise GGUFError(
                    f"{first.path}: is shard of a {count}-file split; open the first shard "
                    f"('...-00001-of-{count:05d}.gguf')"
                )
            for p in split_paths(m.group("prefix") + ".gguf", count)[1:]:
                if not p.is_file():
                    raise GGUFError(f"{first.path}: split shard '{p.name}' is missing ({count} shards expected)")
                self.files.append(GGUFFile(p))
            for i, f in enumerate(self.files):
                no, cnt = f.metadata.get(KEY_SPLIT_NO, -1), f.metadata.get(KEY_SPLIT_COUNT, -1)
                if no != i or cnt != count:
                    raise GGUFError(
                        f"{f.path}: split.no = {no!r}, split.count = {cnt!r}: it is not shard {i} "
                        f"(0-based) of this {count}-file set; it belongs to another split set"
                    )
        self.metadata = dict(first.metadata)
        self._where: dict[str, GGUFFile] = {}
        for f in self.files:
            for n in f.tensors:
                if n in self._where:
                    raise GGUFError(f"{f.path}: tensor '{n}' also appears in {self._where[n].path}")
                self._where[n] = f
        want = self.metadata.get(KEY_SPLIT_TENSORS_COUNT)
        if count > 1 and want is not None and want != len(self._where):
            raise GGUFError(
                f"{first.path}: split.tensors.count says {want} tensors, the shards hold {len(self._where)}"
            )

    def names(self) -> list[str]:
        return list(self._where)

    def ref(self, name: str) -> TensorRef:
        f = self._where.get(name)
        if f is None:
            raise GGUFError(f"{self.files[0].path}: no tensor named '{name}'")
        return f.ref(name)

    def raw(self, name: str) -> np.ndarray:
        self.ref(name)
        return self._where[name].raw(name)

    def refs(self) -> Iterable[TensorRef]:
        return (self.ref(n) for n in self._where)
