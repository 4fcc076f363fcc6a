"""Importance matrices from llama.cpp's ``llama-imatrix``: the GGUF format and the legacy ``.dat``.

Both are turned into what llama-quantize feeds ``ggml_quantize_chunk``: per GGUF weight name a float32
``[n_mat, ne0]`` array of mean squared activations (one row per expert for stacked experts).  GGUF:
``<name>.in_sum2`` / ``<name>.counts`` (count 0 -> 1.0, as llama.cpp); legacy: ``values / ncall``.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np

__all__ = ["ImatrixError", "load_imatrix", "imatrix_for"]


class ImatrixError(ValueError):
    """The imatrix file is unreadable or does not fit the model's tensors."""


def load_imatrix(path: str | Path) -> dict[str, np.ndarray]:
    path = Path(path)
    if not path.is_file():
        raise ImatrixError(f"{path}: imatrix file not found")
    with open(path, "rb") as f:
        magic = f.read(4)
    return _load_gguf(path) if magic == b"GGUF" else _load_dat(path)


def _load_gguf(path: Path) -> dict[str, np.ndarray]:
    from dsv4_gguf.gguf_io import GGUFError, GGUFFile

    try:
        g = GGUFFile(path)
    except GGUFError as e:
        raise ImatrixError(str(e)) from None
    sums = {n[: -len(".in_sum2")]: n for n in g.tensors if n.endswith(".in_sum2")}
    if not sums:
        raise ImatrixError(f"{path}: GGUF file has no '*.in_sum2' tensors; not a llama-imatrix file")
    out: dict[str, np.ndarray] = {}
    for name, sname in sums.items():
        s = np.asarray(g.raw(sname), dtype=np.float32)
        cname = name + ".counts"
        if cname not in g.tensors:
            raise ImatrixError(f"{path}: '{sname}' has no matching '{cname}'")
        c = np.asarray(g.raw(cname), dtype=np.float32).reshape(-1)
        s = s.reshape(len(c), -1) if s.ndim == 1 else s.reshape(-1, s.shape[-1])
        if s.shape[0] != len(c):
            raise ImatrixError(f"{path}: '{sname}' has {s.shape[0]} matrices but '{cname}' {len(c)} counts")
        mean = np.where(c[:, None] > 0, s / np.maximum(c[:, None], 1), 1.0).astype(np.float32)
        out[name] = np.ascontiguousarray(mean)
    return out


def _load_dat(path: Path) -> dict[str, np.ndarray]:
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
    if n_entries < 0 or n_entries > 1_000_000:
        raise ImatrixError(f"{path}: not an imatrix file (entry count {n_entries})")
    out: dict[str, np.ndarray] = {}
    for _ in range(n_entries):
        (ln,) = take("<i")
        if ln <= 0 or ln > 4096:
            raise ImatrixError(f"{path}: corrupt entry name length {ln}")
        name = bytes(take(f"<{ln}s")[0]).decode("utf-8", "replace")
        ncall, nval = take("<ii")
        if nval <= 0:
            raise ImatrixError(f"{path}: entry '{name}' has {nval} values")
        vals = np.frombuffer(data, np.float32, nval, pos).copy()
        pos += 4 * nval
        out[name] = (vals / ncall if ncall > 0 else vals).astype(np.float32).reshape(1, -1)
    return out


def imatrix_for(im: dict[str, np.ndarray] | None, name: str, n_mat: int, ne0: int) -> np.ndarray | None:
    """The ``[n_mat, ne0]`` importance array of GGUF tensor ``name`` (``None`` when the file has none)."""
    if im is None or name not in im:
        return None
    a = im[name]
    if a.size != n_mat * ne0:
        raise ImatrixError(f"imatrix entry '{name}' has {a.size} values, the tensor needs {n_mat} x {ne0} "
                           f"(columns x experts); the imatrix was computed for a different model")
    return np.ascontiguousarray(a.reshape(n_mat, ne0), dtype=np.float32)
