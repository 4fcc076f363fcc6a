"""Quantize / dequantize tensors in ggml block formats with the native kernels.

Mirrors ``gguf.quants`` so one can be swapped for the other: ``quantize(data, qtype)`` and
``dequantize(data, qtype)`` with ``qtype`` a ``gguf.GGMLQuantizationType``, rows along the last
axis, quantized arrays uint8 with the last axis in bytes (F32/F16 return float32/float16 like
``gguf``).  Unlike ``gguf`` nothing is silently cast: inputs must be C-contiguous float32 (uint8
for quantized data) and finite.  Also the lossless converter paths: DeepSeek FP4 -> MXFP4 and
FP8 (E4M3 + 128x128 E8M0 scales) -> F32 / BF16 / Q8_0.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from gguf import GGMLQuantizationType

from . import _C
from .constants import QTYPES

# Kernel levels: "ref", "avx2", "avx512" (x86-64), "neon" (aarch64); "simd" (the historical name) is the
# architecture's first SIMD level (avx2 / neon); "auto" follows DSV4_KERNELS or else the best the CPU has.
Impl = Literal["auto", "ref", "simd", "avx2", "avx512", "neon"]

__all__ = [
    "quantize",
    "dequantize",
    "matvec",
    "row_bytes",
    "weight_energy",
    "repack_fp4_to_mxfp4",
    "fp8_to_f32",
]


def _info(qtype: GGMLQuantizationType):
    try:
        return QTYPES[GGMLQuantizationType(qtype)]
    except (KeyError, ValueError):
        supported = ", ".join(t.name for t in QTYPES)
        name = qtype.name if isinstance(qtype, GGMLQuantizationType) else repr(qtype)
        raise ValueError(f"quant type {name} is not supported by dsv4_gguf.quants (supported: {supported})") from None


def row_bytes(cols: int, qtype: GGMLQuantizationType) -> int:
    """Bytes of one row of ``cols`` elements in ``qtype``."""
    info = _info(qtype)
    if cols % info.block_size:
        raise ValueError(f"row length {cols} is not a multiple of the {info.qtype.name} block size {info.block_size}")
    return cols // info.block_size * info.type_size


def _require_f32(data: np.ndarray, what: str) -> None:
    if not isinstance(data, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array, got {type(data).__name__}")
    if data.dtype != np.float32:
        raise TypeError(f"{what}: expected float32, got {data.dtype} (convert explicitly with .astype(np.float32))")
    if not data.flags.c_contiguous:
        raise ValueError(f"{what}: array must be C-contiguous (use np.ascontiguousarray)")
    if data.ndim < 1:
        raise ValueError(f"{what}: expected at least a 1-D array")


def weight_energy(data: np.ndarray) -> np.ndarray:
    """Importance fallback when no imatrix exists: mean square of each column over the rows."""
    _require_f32(data, "weight_energy")
    rows = data.reshape(-1, data.shape[-1])
    return np.ascontiguousarray(np.mean(np.square(rows, dtype=np.float64), axis=0).astype(np.float32))


def quantize(
    data: np.ndarray,
    qtype: GGMLQuantizationType,
    imatrix: np.ndarray | Literal["energy"] | None = None,
    *,
    impl: Impl = "auto",
    threads: int = 0,
) -> np.ndarray:
    """float32 [..., cols] -> ggml ``qtype`` ([..., row_bytes] uint8; float32/float16 for F32/F16).

    ``imatrix``: one importance weight per column (used by the K and IQ types, ignored by Q8_0, Q4_0,
    MXFP4), or ``"energy"`` for the per-column mean square of ``data`` (the fallback for the types
    that require one, ``QTYPES[t].needs_imatrix``, when no imatrix was collected).  Rows are quantized
    in parallel with the GIL released.
    """
    info = _info(qtype)
    _require_f32(data, "quantize data")
    cols = data.shape[-1]
    row_bytes(cols, info.qtype)
    if isinstance(imatrix, str):
        if imatrix != "energy":
            raise ValueError(f"imatrix must be an array, None or 'energy', got {imatrix!r}")
        imatrix = weight_energy(data)
    elif imatrix is not None:
        _require_f32(imatrix, "quantize imatrix")
        if imatrix.shape != (cols,):
            raise ValueError(f"imatrix: expected shape ({cols},) (one weight per column), got {imatrix.shape}")
    if info.needs_imatrix and imatrix is None:
        raise ValueError(
            f"{info.qtype.name} quantization requires an importance matrix: pass imatrix=<array of {cols}> "
            "or imatrix='energy' for the weight-energy fallback"
        )
    rows2d = data.reshape(-1, cols)
    out = _C.quantize_rows(int(info.qtype), rows2d, imatrix, impl, threads)
    out = out.reshape(*data.shape[:-1], out.shape[-1])
    if info.qtype == GGMLQuantizationType.F32:
        return out.view(np.float32)
    if info.qtype == GGMLQuantizationType.F16:
        return out.view(np.float16)
    return out


def dequantize(data: np.ndarray, qtype: GGMLQuantizationType, *, impl: Impl = "auto", threads: int = 0) -> np.ndarray:
    """ggml ``qtype`` data (uint8 [..., row_bytes]; float32/float16 also accepted for F32/F16) -> float32."""
    info = _info(qtype)
    if not isinstance(data, np.ndarray):
        raise TypeError(f"dequantize: expected a numpy array, got {type(data).__name__}")
    if info.qtype == GGMLQuantizationType.F32 and data.dtype == np.float32:
        data = data.view(np.uint8)
    elif info.qtype == GGMLQuantizationType.F16 and data.dtype == np.float16:
        data = data.view(np.uint8)
    if data.dtype != np.uint8:
        raise TypeError(f"dequantize: expected uint8 block data for {info.qtype.name}, got {data.dtype}")
    if not data.flags.c_contiguous:
        raise ValueError("dequantize: array must be C-contiguous (use np.ascontiguousarray)")
    if data.ndim < 1:
        raise ValueError("dequantize: expected at least a 1-D array")
    nbytes = data.shape[-1]
    if nbytes % info.type_size:
        raise ValueError(
            f"dequantize: {nbytes} bytes per row is not a multiple of the {info.qtype.name} block "
            f"({info.type_size} bytes)"
        )
    out = _C.dequantize_rows(int(info.qtype), data.reshape(-1, nbytes), impl, threads)
    return out.reshape(*data.shape[:-1], out.shape[-1])


def matvec(
    weight: np.ndarray, x: np.ndarray, qtype: GGMLQuantizationType, *, impl: Impl = "auto", threads: int = 0
) -> np.ndarray:
    """y = W @ x for quantized W [rows, row_bytes], x float32 [cols]; x is quantized to Q8_0/Q8_K first."""
    info = _info(qtype)
    if weight.ndim != 2:
        raise ValueError(f"matvec: weight must be 2-D [rows, row_bytes], got {weight.ndim}-D")
    _require_f32(x, "matvec x")
    return _C.matvec(int(info.qtype), weight, x, impl, threads)


def matmul(
    weight: np.ndarray, x: np.ndarray, qtype: GGMLQuantizationType, *, impl: Impl = "auto", threads: int = 0
) -> np.ndarray:
    """Y = X @ W.T for quantized W [rows, row_bytes] and X float32 [tokens, cols] -> [tokens, rows]; each
    row of X is quantized once, and every value equals matvec of that row bit for bit."""
    info = _info(qtype)
    if weight.ndim != 2:
        raise ValueError(f"matmul: weight must be 2-D [rows, row_bytes], got {weight.ndim}-D")
    _require_f32(x, "matmul x")
    return _C.matmul(int(info.qtype), weight, np.ascontiguousarray(x), impl, threads)


def repack_fp4_to_mxfp4(weight: np.ndarray, scale: np.ndarray, *, threads: int = 0) -> np.ndarray:
    """DeepSeek FP4 (uint8 [rows, cols/2], element 2k low nibble) + E8M0 scales (uint8 [rows, cols/32])
    -> MXFP4 bytes [rows, cols/32*17], by moving nibbles and copying the scale byte (lossless)."""
    return _C.repack_fp4_to_mxfp4(_as_u8(weight, "weight"), _as_u8(scale, "scale"), threads)


def _as_u8(a: np.ndarray, what: str) -> np.ndarray:
    """Reinterpret 1-byte float8/int8 dtypes as uint8 (a view, never a value conversion)."""
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{what}: expected a numpy array, got {type(a).__name__}")
    if a.dtype.itemsize == 1 and a.dtype != np.uint8:
        return a.view(np.uint8)
    return a


def fp8_to_f32(weight: np.ndarray, scale: np.ndarray, *, threads: int = 0) -> np.ndarray:
    """FP8 E4M3 [rows, cols] with E8M0 128x128 block scales -> float32 (exact)."""
    return _C.dequant_fp8(_as_u8(weight, "weight"), _as_u8(scale, "scale"), "auto", threads)
