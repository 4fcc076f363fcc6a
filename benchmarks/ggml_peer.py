"""ggml itself as the peer: ctypes bindings to the libggml shipped inside llama-cpp-python.

quantize() calls ``ggml_quantize_chunk`` (what llama-quantize runs), dequantize() the type's
``to_float``, and vec_dot() the CPU backend's ``vec_dot`` after quantizing the activations with the
backend's ``from_float`` for ``vec_dot_type`` — the same path ggml's matmul takes.  Used by the tests
and benchmarks/quant_kernels.py; ``load()`` returns None when llama_cpp is not importable.
"""

from __future__ import annotations

import ctypes
import functools
import os
from pathlib import Path

import numpy as np

_TO_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_FROM_FLOAT = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)
_VEC_DOT = ctypes.CFUNCTYPE(
    None,
    ctypes.c_int,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
)


class _TypeTraits(ctypes.Structure):
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


class _CpuTraits(ctypes.Structure):
    _fields_ = [
        ("from_float", ctypes.c_void_p),
        ("vec_dot", ctypes.c_void_p),
        ("vec_dot_type", ctypes.c_int),
        ("nrows", ctypes.c_int64),
    ]


class GGML:
    def __init__(self, libdir: Path):
        mode = getattr(os, "RTLD_GLOBAL", 0)
        self.base = ctypes.CDLL(str(libdir / "libggml-base.so"), mode=mode)
        self.cpu = ctypes.CDLL(str(libdir / "libggml-cpu.so"), mode=mode)
        self.libdir = libdir
        b = self.base
        b.ggml_quantize_chunk.restype = ctypes.c_size_t
        b.ggml_quantize_chunk.argtypes = [
            ctypes.c_int,
            ctypes.c_void_p,
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_int64,
            ctypes.c_void_p,
        ]
        b.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        b.ggml_get_type_traits.argtypes = [ctypes.c_int]
        b.ggml_row_size.restype = ctypes.c_size_t
        b.ggml_row_size.argtypes = [ctypes.c_int, ctypes.c_int64]
        b.ggml_quantize_init.argtypes = [ctypes.c_int]
        self.cpu.ggml_cpu_init.restype = None
        self.cpu.ggml_cpu_init()
        self.cpu.ggml_get_type_traits_cpu.restype = ctypes.POINTER(_CpuTraits)
        self.cpu.ggml_get_type_traits_cpu.argtypes = [ctypes.c_int]

    def row_size(self, qtype: int, cols: int) -> int:
        return int(self.base.ggml_row_size(int(qtype), cols))

    def quantize(self, x: np.ndarray, qtype: int, imatrix: np.ndarray | None = None) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
        rows, cols = x.shape
        out = np.zeros((rows, self.row_size(qtype, cols)), dtype=np.uint8)
        im = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
            im = imatrix.ctypes.data
        self.base.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, 0, rows, cols, im)
        return out

    def quantize_threads(self, x: np.ndarray, qtype: int, imatrix: np.ndarray | None, threads: int) -> np.ndarray:
        """ggml_quantize_chunk on `threads` row chunks at once, as llama-quantize does (ctypes drops
        the GIL for the duration of each foreign call)."""
        from concurrent.futures import ThreadPoolExecutor

        x = np.ascontiguousarray(x, dtype=np.float32).reshape(-1, x.shape[-1])
        rows, cols = x.shape
        out = np.zeros((rows, self.row_size(qtype, cols)), dtype=np.uint8)
        im = None if imatrix is None else np.ascontiguousarray(imatrix, dtype=np.float32).ctypes.data
        step = -(-rows // threads)

        def work(r0: int) -> None:
            n = min(step, rows - r0)
            self.base.ggml_quantize_chunk(int(qtype), x.ctypes.data, out.ctypes.data, r0 * cols, n, cols, im)

        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(work, range(0, rows, step)))
        return out

    def vec_dot(self, qtype: int, w: np.ndarray, act: np.ndarray, n: int) -> float:
        s = ctypes.c_float()
        _VEC_DOT(self.cpu_traits(qtype).vec_dot)(n, ctypes.addressof(s), 0, w.ctypes.data, 0, act.ctypes.data, 0, 1)
        return s.value

    @functools.cache  # noqa: B019 - one instance per process
    def _to_float(self, qtype: int):
        ptr = self.base.ggml_get_type_traits(int(qtype)).contents.to_float
        return _TO_FLOAT(ptr)

    def dequantize(self, q: np.ndarray, qtype: int, cols: int) -> np.ndarray:
        q = np.ascontiguousarray(q).reshape(-1, q.shape[-1])
        if int(qtype) == 0:  # F32 has no to_float in ggml: the bytes are the values
            return q.view(np.float32).reshape(-1, cols).copy()
        out = np.empty((q.shape[0], cols), dtype=np.float32)
        self._to_float(int(qtype))(q.ctypes.data, out.ctypes.data, q.shape[0] * cols)
        return out

    def cpu_traits(self, qtype: int):
        return self.cpu.ggml_get_type_traits_cpu(int(qtype)).contents

    def quantize_activation(self, x: np.ndarray, qtype: int) -> tuple[np.ndarray, int]:
        """x float32 [cols] -> activation bytes in qtype's vec_dot_type, and that type id."""
        t = self.cpu_traits(qtype)
        vt = t.vec_dot_type
        out = np.zeros(self.row_size(vt, x.shape[0]), dtype=np.uint8)
        _FROM_FLOAT(self.cpu_traits(vt).from_float)(x.ctypes.data, out.ctypes.data, x.shape[0])
        return out, vt

    def matvec(self, w: np.ndarray, x: np.ndarray, qtype: int, act: np.ndarray | None = None) -> np.ndarray:
        """y[r] = vec_dot(W[r], quantized x), row by row (single thread, like one ggml worker)."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if act is None:
            act, _ = self.quantize_activation(x, qtype)
        dot = _VEC_DOT(self.cpu_traits(qtype).vec_dot)
        rows, rb = w.shape
        y = np.zeros(rows, dtype=np.float32)
        s = ctypes.c_float()
        base = w.ctypes.data
        for r in range(rows):
            dot(x.shape[0], ctypes.addressof(s), 0, base + r * rb, 0, act.ctypes.data, 0, 1)
            y[r] = s.value
        return y


@functools.lru_cache(maxsize=1)
def load() -> GGML | None:
    try:
        import llama_cpp
    except ImportError:
        return None
    libdir = Path(llama_cpp.__file__).parent / "lib"
    if not (libdir / "libggml-base.so").exists():
        return None
    return GGML(libdir)
