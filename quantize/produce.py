"""Bytes of one planned GGUF tensor, produced in bounded chunks from the checkpoint.

Each generator yields consecutive pieces of the tensor's final bytes: row blocks of dense tensors
(a multiple of 128 rows so FP8 scale blocks are never cut), one expert at a time for stacked experts.
Checkpoint bytes are read with ``pread`` into fresh buffers rather than through the shard mmaps, so
resident memory stays at a few chunks however large the checkpoint is.  Quantization goes through
``dsv4_gguf.quants`` (row-parallel, all cores, GIL released).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import numpy as np
from gguf import GGMLQuantizationType

from dsv4_gguf import _C, quants
from dsv4_gguf.checkpoint import NUMPY_DTYPES, Checkpoint, CheckpointError
from dsv4_gguf.constants import QTYPES
from dsv4_gguf.names import GTensor

from .recipes import Planned

__all__ = ["RawReader", "produce", "CHUNK_BYTES"]

Q = GGMLQuantizationType
CHUNK_BYTES = 64 << 20  # float32 bytes per dense row block


class RawReader:
    """``pread``-based access to checkpoint tensors (no mmap residency)."""

    def __init__(self, ck: Checkpoint):
        self.ck = ck
        self._fds: dict[str, int] = {}
        self.bytes_read = 0

    def _fd(self, shard: str) -> int:
        fd = self._fds.get(shard)
        if fd is None:
            fd = self._fds[shard] = os.open(self.ck.path / shard, os.O_RDONLY)
        return fd

    def read(self, name: str, r0: int = 0, r1: int | None = None) -> np.ndarray:
        """Rows ``[r0, r1)`` of the stored tensor (typed, e.g. float8/bfloat16/int8)."""
        info = self.ck.info(name)
        dt = NUMPY_DTYPES[info.dtype]
        shape = info.shape
        rows = shape[0] if shape else 1
        r1 = rows if r1 is None else min(r1, rows)
        row_bytes = info.nbytes // rows if rows else 0
        n = (r1 - r0) * row_bytes
        buf = np.empty(n, np.uint8)
        fd = self._fd(self.ck.weight_map[name])
        got = os.preadv(fd, [buf], info.begin + r0 * row_bytes) if n else 0
        if got != n:
            raise CheckpointError(
                f"{self.ck.path / self.ck.weight_map[name]}: short read of '{name}' "
                f"({got} of {n} bytes); the shard is truncated"
            )
        self.bytes_read += n
        out = buf.view(dt)
        return out.reshape((r1 - r0, *shape[1:])) if shape else out.reshape(())

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()


def row_block(cols: int) -> int:
    return max(128, (CHUNK_BYTES // max(1, cols * 4)) // 128 * 128)


def _scale_name(name: str) -> str:
    return name[: -len(".weight")] + ".scale"


def _fp8_rows(rd: RawReader, name: str, r0: int, r1: int) -> np.ndarray:
    w = rd.read(name, r0, r1)
    s = rd.read(_scale_name(name), r0 // 128, -(-r1 // 128))
    return quants.fp8_to_f32(w, s)


def _f32_rows(rd: RawReader, name: str, kind: str, r0: int, r1: int) -> np.ndarray:
    if kind == "fp8":
        return _fp8_rows(rd, name, r0, r1)
    a = rd.read(name, r0, r1)
    return np.ascontiguousarray(a.astype(np.float32))


def _check_e8m0(scale: np.ndarray, name: str) -> None:
    if np.any(scale.view(np.uint8) == 0xFF):
        raise CheckpointError(f"scale '{_scale_name(name)}' contains the E8M0 NaN code 0xFF; the checkpoint is corrupt")


def quant_checked(x: np.ndarray, qt: GGMLQuantizationType, imat: np.ndarray | None) -> np.ndarray:
    if not np.all(np.isfinite(x)):
        raise CheckpointError("non-finite values (NaN/Inf) in the dequantized weights; the checkpoint is corrupt")
    im: np.ndarray | str | None = imat
    if imat is not None and not np.all(np.isfinite(imat)):
        im = "energy"  # an expert the imatrix never saw routed (NaN row from imatrix_for)
    if im is None and QTYPES[qt].needs_imatrix:
        im = "energy"  # no imatrix given: per-column weight energy (documented in the recipe)
    out = quants.quantize(np.ascontiguousarray(x, dtype=np.float32), qt, im)
    return out.view(np.uint8)


def produce(p: Planned, *, rd: RawReader, imatrix: np.ndarray | None = None) -> Iterator[np.ndarray]:
    """Yield the final bytes of ``p`` (uint8 arrays, in order)."""
    t: GTensor = p.tensor
    qt = p.qtype
    if t.assemble == "stack":
        for e, name in enumerate(t.sources):
            im = imatrix[e] if imatrix is not None else None
            if t.kind == "fp4":
                w, s = rd.read(name), rd.read(_scale_name(name))
                _check_e8m0(s, name)
                if qt == Q.MXFP4:
                    yield quants.repack_fp4_to_mxfp4(w, s)
                    continue
                x = _C.dequant_fp4(w.view(np.uint8), s.view(np.uint8))
            else:
                x = _f32_rows(rd, name, t.kind, 0, t.shape[1])
            yield quant_checked(x, qt, im)
        return
    im = imatrix[0] if imatrix is not None else None
    if t.kind == "i64":
        a = rd.read(t.sources[0])
        if a.size and (a.min() < 0 or a.max() >= 2**31):
            raise CheckpointError(f"'{t.sources[0]}' holds expert ids outside the int32 range")
        yield a.astype(np.int32).view(np.uint8).reshape(-1)
        return
    if len(t.shape) == 1:
        a = rd.read(t.sources[0]).astype(np.float32)
        yield (a if qt == Q.F32 else quant_checked(a, qt, None)).view(np.uint8).reshape(-1)
        return
    rows, cols = t.shape[0], t.shape[-1]
    step = row_block(cols)
    same = (t.kind == "f32" and qt == Q.F32) or (t.kind == "bf16" and qt == Q.BF16) or (t.kind == "f16" and qt == Q.F16)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        if same:
            yield rd.read(t.sources[0], r0, r1).view(np.uint8).reshape(-1)
            continue
        if t.assemble == "cols":
            x = np.concatenate([_f32_rows(rd, n, t.kind, r0, r1) for n in t.sources], axis=1)
        else:
            x = _f32_rows(rd, t.sources[0], t.kind, r0, r1)
        if qt == Q.F32:
            yield x.view(np.uint8).reshape(-1)
        else:
            yield quant_checked(x, qt, im).reshape(-1)
