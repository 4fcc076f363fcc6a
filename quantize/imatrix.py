"""Importance matrices from llama.cpp's ``llama-imatrix``: the GGUF format and the legacy ``.dat``.

Both are turned into what llama-quantize feeds ``ggml_quantize_chunk``: per GGUF weight name a float32
``[n_mat, ne0]`` array of mean squared activations (one row per expert for stacked experts).  GGUF:
``<name>.in_sum2`` / ``<name>.counts`` (count 0 -> 1.0, as llama.cpp); legacy: ``values / ncall``.
`load_imatrix_raw` keeps the sums and counts (merging, resuming); `write_imatrix` writes the GGUF form.
Experts with count 0 are listed in ``Imatrix.unseen``; for the converter `imatrix_for` gives them NaN
rows, replaced by the weight-energy fallback in `produce.quant_checked` (llama.cpp would use 1.0).
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["ImatrixError", "Imatrix", "RawImatrix", "load_imatrix", "load_imatrix_raw", "write_imatrix", "imatrix_for"]


class ImatrixError(ValueError):
    """The imatrix file is unreadable or does not fit the model's tensors."""


class Imatrix(dict):
    """name -> float32 ``[n_mat, ne0]`` means (llama.cpp's values); ``unseen[name]``: expert ids with count 0."""

    unseen: dict[str, list[int]]


class RawImatrix:
    """Raw sums of squares ``[n_mat, ne0]`` and token counts ``[n_mat]`` (float64), plus provenance."""

    def __init__(
        self,
        sums: dict[str, np.ndarray] | None = None,
        counts: dict[str, np.ndarray] | None = None,
        datasets: list[str] | None = None,
        chunk_count: int = 0,
        chunk_size: int = 0,
        extra: dict[str, str] | None = None,
    ):
        self.sums = sums or {}
        self.counts = counts or {}
        self.datasets = datasets or []
        self.chunk_count, self.chunk_size = chunk_count, chunk_size
        self.extra = extra or {}  # further string KVs (resume fingerprint)


def load_imatrix(path: str | Path) -> Imatrix:
    raw = load_imatrix_raw(path)
    out = Imatrix()
    out.unseen = {}
    for name, s in raw.sums.items():
        c = raw.counts[name]
        out[name] = np.ascontiguousarray(np.where(c[:, None] > 0, s / np.maximum(c[:, None], 1), 1.0), np.float32)
        if (c <= 0).any() and len(c) > 1:
            out.unseen[name] = [int(e) for e in np.flatnonzero(c <= 0)]
    return out


def load_imatrix_raw(path: str | Path) -> RawImatrix:
    path = Path(path)
    if not path.is_file():
        raise ImatrixError(f"{path}: imatrix file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    return _load_gguf(path) if magic == b"GGUF" else _load_dat(path)


def write_imatrix(path: str | Path, raw: RawImatrix) -> None:
    """llama-imatrix's GGUF form: ``<name>.in_sum2`` {ne0, n_mat} and ``<name>.counts`` {1, n_mat}, F32,
    sorted by name; written to a temp file and renamed."""
    from gguf import GGMLQuantizationType as Q

    from dsv4_gguf.gguf_io import KV, TensorEntry, write_plain

    kvs = [
        KV("general.type", "str", "imatrix"),
        KV("imatrix.datasets", "str[]", list(raw.datasets)),
        KV("imatrix.chunk_count", "u32", int(raw.chunk_count)),
        KV("imatrix.chunk_size", "u32", int(raw.chunk_size)),
    ]
    kvs += [KV(k, "str", v) for k, v in sorted(raw.extra.items())]
    ts = []
    for name in sorted(raw.sums):
        s = np.ascontiguousarray(raw.sums[name], np.float32)
        c = np.ascontiguousarray(raw.counts[name], np.float32).reshape(-1, 1)
        ts += [(TensorEntry(name + ".in_sum2", s.shape, Q.F32), s), (TensorEntry(name + ".counts", c.shape, Q.F32), c)]
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    write_plain(tmp, kvs, ts)
    tmp.replace(path)


def _load_gguf(path: Path) -> RawImatrix:
    from gguf import GGMLQuantizationType as Q

    from dsv4_gguf.gguf_io import GGUFError, GGUFFile

    try:
        g = GGUFFile(path)
    except GGUFError as e:
        raise ImatrixError(str(e)) from None
    sums = {n[: -len(".in_sum2")]: n for n in g.tensors if n.endswith(".in_sum2")}
    if not sums:
        raise ImatrixError(f"{path}: GGUF file has no '*.in_sum2' tensors; not a llama-imatrix file")
    md = g.metadata
    datasets = md.get("imatrix.datasets", [])
    if isinstance(datasets, str):
        datasets = [datasets]
    if not isinstance(datasets, list) or not all(isinstance(d, str) for d in datasets):
        raise ImatrixError(f"{path}: 'imatrix.datasets' must be an array of strings, got {datasets!r:.80}")
    chunks = {}
    for key in ("imatrix.chunk_count", "imatrix.chunk_size"):
        v = md.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise ImatrixError(f"{path}: '{key}' must be a non-negative integer, got {v!r:.80}")
        chunks[key] = v
    out = RawImatrix(
        datasets=datasets,
        chunk_count=chunks["imatrix.chunk_count"],
        chunk_size=chunks["imatrix.chunk_size"],
        extra={k: v for k, v in md.items() if k.startswith("dsv4.") and isinstance(v, str)},
    )
    for name, sname in sums.items():
        cname = name + ".counts"
        if cname not in g.tensors:
            raise ImatrixError(f"{path}: '{sname}' has no matching '{cname}'")
        for t in (sname, cname):
            if g.ref(t).qtype != Q.F32:
                raise ImatrixError(f"{path}: '{t}' is {g.ref(t).qtype.name}; llama-imatrix stores F32")
        s = np.asarray(g.raw(sname), dtype=np.float64)
        c = np.asarray(g.raw(cname), dtype=np.float64).reshape(-1)
        if len(c) == 0 or s.size == 0 or s.size % len(c):
            raise ImatrixError(
                f"{path}: '{sname}' has {s.size} values, not a whole number of rows for the "
                f"{len(c)} counts of '{cname}'"
            )
        s = s.reshape(len(c), -1) if s.ndim == 1 else s.reshape(-1, s.shape[-1])
        if s.shape[0] != len(c):
            raise ImatrixError(f"{path}: '{sname}' has {s.shape[0]} matrices but '{cname}' {len(c)} counts")
        out.sums[name], out.counts[name] = s, c
    return out


MAX_DAT_ENTRIES = 1_000_000
MAX_DAT_NAME = 4096


def _load_dat(path: Path) -> RawImatrix:
    data = path.read_bytes()
    pos = 0

    def take(fmt: str) -> tuple:
        nonlocal pos
        n = struct.calcsize(fmt)
        if pos + n > len(data):
            raise ImatrixError(f"{path}: truncated legacy imatrix (.dat) at byte {pos}")
        v = struct.unpack_from(fmt, data, pos)
        pos += n
        return v

    (n_entries,) = take("<i")
    if n_entries < 0 or n_entries > MAX_DAT_ENTRIES:
        raise ImatrixError(f"{path}: not an imatrix file (entry count {n_entries}, limit {MAX_DAT_ENTRIES})")
    out = RawImatrix()
    for _ in range(n_entries):
        (ln,) = take("<i")
        if ln <= 0 or ln > MAX_DAT_NAME:
            raise ImatrixError(f"{path}: corrupt entry name length {ln} at byte {pos - 4} (1..{MAX_DAT_NAME})")
        name = bytes(take(f"<{ln}s")[0]).decode("utf-8", "replace")
        ncall, nval = take("<ii")
        if nval <= 0:
            raise ImatrixError(f"{path}: entry '{name}' has {nval} values")
        if pos + 4 * nval > len(data):
            raise ImatrixError(
                f"{path}: entry '{name}' claims {nval} values but the file ends after "
                f"{(len(data) - pos) // 4}; the file is truncated"
            )
        if name in out.sums:
            raise ImatrixError(f"{path}: duplicate entry '{name}'; the file is corrupt")
        vals = np.frombuffer(data, np.float32, nval, pos).copy()
        pos += 4 * nval
        # legacy values are mean * ncall: kept as sums with count ncall (count 1 when ncall is 0)
        out.sums[name], out.counts[name] = vals.astype(np.float64).reshape(1, -1), np.array([max(ncall, 1)], np.float64)
    if pos + 8 <= len(data):
        out.chunk_count, ln = struct.unpack_from("<ii", data, pos)
        if 0 < ln <= len(data) - pos - 8:
            out.datasets = [data[pos + 8 : pos + 8 + ln].decode("utf-8", "replace")]
    return out


def imatrix_for(
    im: dict[str, np.ndarray] | None, name: str, n_mat: int, ne0: int, unseen_nan: bool = False
) -> np.ndarray | None:
    """The ``[n_mat, ne0]`` importance array of GGUF tensor ``name`` (``None`` when the file has none).
    ``unseen_nan``: rows of experts never routed become NaN (the converter then uses the weight energy)."""
    if im is None or name not in im:
        return None
    a = im[name]
    if a.size != n_mat * ne0:
        raise ImatrixError(
            f"imatrix entry '{name}' has {a.size} values, the tensor needs {n_mat} x {ne0} "
            f"(columns x experts); the imatrix was computed for a different model"
        )
    a = np.array(a.reshape(n_mat, ne0), dtype=np.float32)
    for e in getattr(im, "unseen", {}).get(name, ()) if unseen_nan else ():
        a[e] = np.nan
    return a
