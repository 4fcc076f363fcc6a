"""The converter's lossless paths: DeepSeek FP4 -> MXFP4 by repacking (bit-exact), and FP8 E4M3 with
128x128 E8M0 scales -> F32 / BF16 (exact) and -> Q8_0 (requantized)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from gguf import GGMLQuantizationType as T
from gguf import quants as gq

from dsv4_gguf import _C, quants


def fp4_tensor(rows: int, cols: int, seed: int):
    rng = np.random.default_rng(seed)
    packed = rng.integers(0, 256, (rows, cols // 2), dtype=np.uint8)
    scale = rng.integers(100, 140, (rows, cols // 32), dtype=np.uint8)
    scale[0, 0], scale[1, 1], scale[2, -1] = 0, 1, 254  # extreme exponents
    packed[3] = 0
    return packed, scale


def numpy_repack(packed: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Independent oracle: unpack elements in DeepSeek order, repack in ggml's half-split order."""
    rows = packed.shape[0]
    codes = np.stack([packed & 0xF, packed >> 4], axis=-1).reshape(rows, -1, 32)
    qs = codes[..., :16] | (codes[..., 16:] << 4)
    return np.concatenate([scale.reshape(rows, -1, 1), qs], axis=-1).reshape(rows, -1).astype(np.uint8)


def test_repack_fp4_to_mxfp4_bit_exact():
    packed, scale = fp4_tensor(16, 512, 0)
    mx = quants.repack_fp4_to_mxfp4(packed, scale)
    assert mx.shape == (16, 512 // 32 * 17)
    assert np.array_equal(mx, numpy_repack(packed, scale))
    # decoding the MXFP4 (ours and gguf's) equals decoding the source FP4: bit for bit, except that
    # the E2M1 code 0b1000 (-0) decodes to +0 in ggml's integer code table
    src = _C.dequant_fp4(packed, scale)
    with np.errstate(over="ignore"):
        ref = gq.dequantize(mx, T.MXFP4)
    for got in (quants.dequantize(mx, T.MXFP4), ref):
        assert np.array_equal(got, src)
        nz = src != 0
        assert np.array_equal(got.view(np.uint32)[nz], src.view(np.uint32)[nz])


def test_repack_accepts_int8_views_and_rejects_nan_scale():
    packed, scale = fp4_tensor(4, 64, 1)
    mx = quants.repack_fp4_to_mxfp4(packed.view(np.int8), scale.view(ml_dtypes.float8_e8m0fnu))
    assert np.array_equal(mx, numpy_repack(packed, scale))
    scale[2, 1] = 255
    with pytest.raises(ValueError, match="NaN .* row 2, block 1"):
        quants.repack_fp4_to_mxfp4(packed, scale)
    with pytest.raises(ValueError, match="does not match packed weight"):
        quants.repack_fp4_to_mxfp4(packed, np.ascontiguousarray(scale[:, :1]))
    with pytest.raises(ValueError, match="multiple of 32"):
        quants.repack_fp4_to_mxfp4(np.ascontiguousarray(packed[:, :9]), np.ascontiguousarray(scale[:, :1]))


def fp8_tensor(rows: int, cols: int, seed: int):
    rng = np.random.default_rng(seed)
    w = rng.integers(0, 256, (rows, cols), dtype=np.uint8)
    w[(w & 0x7F) == 0x7F] = 0  # E4M3 NaN codes are not weights
    scale = rng.integers(117, 131, ((rows + 127) // 128, (cols + 127) // 128), dtype=np.uint8)
    return w, scale


def test_fp8_to_f32_bf16_exact_and_q8_0():
    w, scale = fp8_tensor(256, 384, 2)
    f32 = quants.fp8_to_f32(w.view(ml_dtypes.float8_e4m3fn), scale)
    vals = w.view(ml_dtypes.float8_e4m3fn).astype(np.float64)
    s = np.exp2(scale.astype(np.float64) - 127).repeat(128, 0).repeat(128, 1)[:256, :384]
    assert np.array_equal(f32, (vals * s).astype(np.float32))
    bf = quants.quantize(quants.fp8_to_f32(w, scale), T.BF16)  # the converter's FP8 -> BF16 path
    assert bf.dtype == np.uint8 and bf.shape == (256, 768)
    assert np.array_equal(quants.dequantize(bf, T.BF16), f32), "FP8 -> BF16 must be lossless"
    q8 = quants.quantize(f32, T.Q8_0)
    err = np.abs(quants.dequantize(q8, T.Q8_0) - f32)
    amax = np.abs(f32).reshape(256, -1, 32).max(-1, keepdims=True)
    assert np.all(err.reshape(256, -1, 32) <= amax / 127 * 0.5 * 1.01 + 1e-30)
