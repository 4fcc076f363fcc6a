"""Bad input raises a clear Python exception naming the problem; nothing is silently cast or copied."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from dsv4_gguf import _C, quants


@pytest.fixture
def x() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((4, 512)).astype(np.float32)


def test_wrong_dtype(x):
    with pytest.raises(TypeError, match="expected float32, got float64"):
        quants.quantize(x.astype(np.float64), T.Q4_K)
    with pytest.raises(TypeError, match="expected float32"):
        quants.quantize(x.astype(np.float16), T.Q8_0)
    with pytest.raises(TypeError, match="float32"):
        _C.quantize_rows(int(T.Q8_0), x.astype(np.float64))
    with pytest.raises(TypeError, match="expected uint8"):
        quants.dequantize(x, T.Q4_K)
    with pytest.raises(TypeError, match="uint8"):
        _C.dequantize_rows(int(T.Q4_K), x)
    with pytest.raises(TypeError, match="numpy array"):
        quants.quantize(x.tolist(), T.Q8_0)


def test_non_contiguous(x):
    with pytest.raises(ValueError, match="C-contiguous"):
        quants.quantize(x[:, ::2], T.Q8_0)
    with pytest.raises(ValueError, match="C-contiguous"):
        quants.quantize(np.asfortranarray(x), T.Q4_K)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.quantize_rows(int(T.Q8_0), x.T)
    q = quants.quantize(x, T.Q8_0)
    with pytest.raises(ValueError, match="C-contiguous"):
        quants.dequantize(q[:, ::2], T.Q8_0)
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.dequantize_rows(int(T.Q8_0), np.asfortranarray(q))


@pytest.mark.parametrize("qtype,cols", [(T.Q8_0, 48), (T.Q4_K, 320), (T.MXFP4, 40), (T.IQ2_XXS, 128)])
def test_row_length_not_multiple_of_block(qtype, cols):
    x = np.ones((2, cols), np.float32)
    with pytest.raises(ValueError, match=f"row length {cols} is not a multiple of the {qtype.name} block size"):
        quants.quantize(x, qtype, "energy")
    with pytest.raises(ValueError, match="not a positive multiple of the block size"):
        _C.quantize_rows(int(qtype), x, np.ones(cols, np.float32))


def test_dequantize_bad_byte_count():
    with pytest.raises(ValueError, match="not a multiple of the Q4_K block"):
        quants.dequantize(np.zeros((2, 150), np.uint8), T.Q4_K)
    with pytest.raises(ValueError, match="not a positive multiple of the Q6_K block size"):
        _C.dequantize_rows(int(T.Q6_K), np.zeros((2, 211), np.uint8))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize(
    "qtype",
    [T.F16, T.BF16, T.Q8_0, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.MXFP4, T.Q4_K, T.Q6_K, T.IQ4_XS, T.IQ4_NL, T.IQ2_XXS]
    + [T.IQ2_XS, T.IQ2_S, T.IQ3_XXS, T.IQ3_S]
    + [T.IQ1_S, T.IQ1_M],
)
@pytest.mark.parametrize("impl", ["ref", "auto"])
def test_non_finite_input(x, bad, qtype, impl):
    x = x.copy()
    x[2, 300] = bad
    with pytest.raises(ValueError, match=r"not finite .* row 2, column 300"):
        quants.quantize(x, qtype, np.ones(512, np.float32), impl=impl)


def test_non_finite_or_negative_imatrix(x):
    for bad in (np.nan, np.inf, -1.0):
        im = np.ones(512, np.float32)
        im[7] = bad
        with pytest.raises(ValueError, match="imatrix: entry 7"):
            quants.quantize(x, T.Q4_K, im)


def test_imatrix_shape_and_dtype(x):
    with pytest.raises(ValueError, match=r"expected shape \(512,\)"):
        quants.quantize(x, T.Q4_K, np.ones(256, np.float32))
    with pytest.raises(TypeError, match="float32"):
        quants.quantize(x, T.Q4_K, np.ones(512, np.float64))
    with pytest.raises(ValueError, match=r"expected shape \(512,\)"):
        _C.quantize_rows(int(T.Q4_K), x, np.ones(256, np.float32))
    with pytest.raises(ValueError, match="'energy'"):
        quants.quantize(x, T.Q4_K, "mean")


@pytest.mark.parametrize("qtype", [T.IQ2_XXS, T.IQ2_XS, T.IQ1_S])  # ggml_quantize_requires_imatrix
def test_requires_imatrix(x, qtype):
    with pytest.raises(ValueError, match=f"{qtype.name} quantization requires an importance matrix.*'energy'"):
        quants.quantize(x, qtype)
    with pytest.raises(ValueError, match=f"{qtype.name} quantization requires an importance matrix"):
        _C.quantize_rows(int(qtype), x)


def test_unsupported_type(x):
    with pytest.raises(ValueError, match="TQ1_0 is not supported"):
        quants.quantize(x, T.TQ1_0)
    with pytest.raises(ValueError, match="unsupported ggml quant type id 34"):
        _C.quantize_rows(34, x)
    for act in (T.Q8_K, T.Q8_1):
        with pytest.raises(ValueError, match="no dot product"):
            quants.matvec(quants.quantize(x, act), x[0], act)


def test_matvec_shape_mismatch(x):
    w = quants.quantize(x, T.Q4_K)
    with pytest.raises(ValueError, match="bytes per row, expected"):
        quants.matvec(w, np.ones(256, np.float32), T.Q4_K)
    v = np.ones(512, np.float32)
    v[3] = np.nan
    with pytest.raises(ValueError, match="activation is not finite at column 3"):
        quants.matvec(w, v, T.Q4_K)


def test_bad_impl(x):
    with pytest.raises(ValueError, match="impl must be"):
        quants.quantize(x, T.Q8_0, impl="sse9")  # a name that is no kernel level anywhere
