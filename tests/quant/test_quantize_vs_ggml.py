"""Quantization against ggml itself (ggml_quantize_chunk via llama-cpp-python): where we run the same
algorithm — every type here, with and without an imatrix — the bytes are identical, hence so is the
round-trip RMSE; plus a per-type RMSE budget on Gaussian data so a regression in both cannot hide."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from dsv4_gguf import quants
from dsv4_gguf.constants import WEIGHT_QTYPES as ALL_TYPES

# Types whose quantizer uses the imatrix (ggml ignores it for Q8_0 and MXFP4; F16/BF16 are casts).
IMATRIX_TYPES = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.IQ4_NL, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS, T.IQ2_XXS)

# Round-trip RMSE budget on N(0,1) data (measured value + ~10%; ggml's own quantizer measures the same).
RMSE_BUDGET = {
    T.F32: 0.0,
    T.F16: 2.3e-4,  # 11-bit significand
    T.BF16: 1.85e-3,  # 8-bit significand
    T.Q8_0: 6.0e-3,
    T.Q4_0: 0.095,
    T.Q4_1: 0.086,  # measured 0.0781 (ggml the same)
    T.Q5_0: 0.047,  # measured 0.0427
    T.Q5_1: 0.0416,  # measured 0.0378
    T.IQ4_NL: 0.084,  # measured 0.0761
    T.MXFP4: 0.128,
    T.Q2_K: 0.33,
    T.Q3_K: 0.167,
    T.Q4_K: 0.079,
    T.Q5_K: 0.040,
    T.Q6_K: 0.0196,
    T.IQ4_XS: 0.085,
    T.IQ2_XXS: 0.62,  # with the energy imatrix (IQ2_XXS cannot run without one)
}


def rmse(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> float:
    e = np.square(a.astype(np.float64) - b)
    if w is not None:
        return float(np.sqrt(np.sum(e * w) / (np.sum(w) * e.shape[0])))
    return float(np.sqrt(np.mean(e)))


CASES = [(t, False) for t in ALL_TYPES if t != T.IQ2_XXS] + [(t, True) for t in IMATRIX_TYPES]


@pytest.mark.parametrize("dataset", ["gaussian", "heavy_tailed", "dsv4_rows"])
@pytest.mark.parametrize("qtype,with_imatrix", CASES, ids=lambda v: v.name if isinstance(v, T) else str(v))
def test_bytes_and_rmse_vs_ggml(ggml, make_imatrix, request, dataset, qtype, with_imatrix):
    x = request.getfixturevalue(dataset)
    im = make_imatrix(x) if with_imatrix else None
    ours = quants.quantize(x, qtype, im).view(np.uint8).reshape(x.shape[0], -1)
    theirs = ggml.quantize(x, qtype, im)
    assert ours.shape == theirs.shape
    diff = np.count_nonzero(ours != theirs)
    assert diff == 0, f"{qtype.name}: {diff} bytes differ from ggml_quantize_chunk ({dataset}, imatrix={with_imatrix})"
    ours_rt = quants.dequantize(ours, qtype)
    theirs_rt = ggml.dequantize(theirs, qtype, x.shape[1])
    assert rmse(ours_rt, x, im) <= rmse(theirs_rt, x, im)
    assert rmse(ours_rt, x) <= rmse(theirs_rt, x)


@pytest.mark.parametrize("qtype", ALL_TYPES, ids=lambda t: t.name)
def test_rmse_budget(gaussian, qtype):
    im = "energy" if qtype == T.IQ2_XXS else None
    got = rmse(quants.dequantize(quants.quantize(gaussian, qtype, im), qtype), gaussian)
    assert got <= RMSE_BUDGET[qtype], f"{qtype.name}: RMSE {got:.5f} over budget {RMSE_BUDGET[qtype]}"


def test_energy_fallback_is_an_imatrix(ggml, heavy_tailed):
    energy = quants.weight_energy(heavy_tailed)
    assert np.allclose(energy, np.mean(heavy_tailed.astype(np.float64) ** 2, axis=0), rtol=1e-6)
    ours = quants.quantize(heavy_tailed, T.IQ2_XXS, "energy")
    assert np.array_equal(ours, ggml.quantize(heavy_tailed, T.IQ2_XXS, energy))


def test_tensor_shapes_follow_gguf_conventions(gaussian):
    x = np.ascontiguousarray(gaussian.reshape(4, 12, 1024))
    q = quants.quantize(x, T.Q4_K)
    assert q.shape == (4, 12, 1024 // 256 * 144) and q.dtype == np.uint8
    assert quants.dequantize(q, T.Q4_K).shape == x.shape
    assert quants.quantize(x, T.F16).dtype == np.float16
    assert quants.quantize(x, T.F32).dtype == np.float32
    assert np.array_equal(quants.dequantize(quants.quantize(x, T.F32), T.F32), x)
