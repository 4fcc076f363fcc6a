"""Independent numpy decoders of the release formats (the oracle the native kernels are checked against)."""

from __future__ import annotations

from types import SimpleNamespace

import ml_dtypes
import numpy as np
import pytest

E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6, -0.0, -0.5, -1, -1.5, -2, -3, -4, -6], np.float32)


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Bit-exact equality of float32 arrays, treating every NaN as equal (NaN payloads are not data)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    nan = np.isnan(a)
    return bool(np.array_equal(nan, np.isnan(b)) and np.array_equal(a.view(np.uint32)[~nan], b.view(np.uint32)[~nan]))


def e8m0(b: np.ndarray) -> np.ndarray:
    """2^(b-127) computed in float64, 255 -> NaN, rounded once to float32 (every value is exact)."""
    v = np.exp2(b.astype(np.float64) - 127.0)
    v[b == 255] = np.nan
    return v.astype(np.float32)


def e4m3(codes: np.ndarray) -> np.ndarray:
    return codes.view(np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)


def fp8_block(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    rows, cols = w.shape
    full = np.repeat(np.repeat(e8m0(s.view(np.uint8)), 128, 0), 128, 1)[:rows, :cols]
    with np.errstate(over="ignore"):
        return e4m3(w) * full


def fp4_group(w: np.ndarray, s: np.ndarray) -> np.ndarray:
    b = w.view(np.uint8)
    vals = np.stack([E2M1[b & 0xF], E2M1[b >> 4]], axis=-1).reshape(b.shape[0], -1)
    with np.errstate(over="ignore"):  # 6 * 2^127 overflows to inf, as it does in the kernel
        return vals * np.repeat(e8m0(s.view(np.uint8)), 32, axis=1)


@pytest.fixture(scope="session")
def npdecode() -> SimpleNamespace:
    return SimpleNamespace(
        same_bits=same_bits, e8m0=e8m0, e4m3=e4m3, fp8_block=fp8_block, fp4_group=fp4_group, E2M1=E2M1
    )
