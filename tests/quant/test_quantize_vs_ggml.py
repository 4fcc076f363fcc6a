"""Quantization against ggml itself (ggml_quantize_chunk via llama-cpp-python): where we run the same
algorithm — every type here, with and without an imatrix — the bytes are identical, hence so is the
round-trip RMSE; plus a per-type RMSE budget on Gaussian data so a regression in both cannot hide."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from dsv4_gguf import quants
from dsv4_gguf.constants import QTYPES
from dsv4_gguf.constants import WEIGHT_QTYPES as ALL_TYPES

# Types whose quantizer uses the imatrix (ggml ignores it for Q8_0 and MXFP4; F16/BF16 are casts).
IMATRIX_TYPES = (T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.IQ4_NL, T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_XS, T.IQ2_XXS)
IMATRIX_TYPES += (T.IQ2_XS, T.IQ2_S)
IMATRIX_TYPES += (T.IQ3_XXS, T.IQ3_S)
IMATRIX_TYPES += (T.IQ1_S, T.IQ1_M)

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
    T.IQ2_XS: 0.333,  # measured 0.3029, with the energy imatrix (required, as IQ2_XXS)
    T.IQ2_S: 0.290,  # measured 0.2629
    T.IQ3_XXS: 0.235,  # measured 0.2140, no imatrix (ggml the same bytes)
    T.IQ3_S: 0.183,  # measured 0.1662
    T.IQ1_S: 0.54,  # measured 0.4930, with the energy imatrix (required, as IQ2_XXS)
    T.IQ1_M: 0.64,  # measured 0.5828, no imatrix (0.4583 with the energy imatrix)
}


def rmse(a: np.ndarray, b: np.ndarray, w: np.ndarray | None = None) -> float:
    e = np.square(a.astype(np.float64) - b)
    if w is not None:
        return float(np.sqrt(np.sum(e * w) / (np.sum(w) * e.shape[0])))
    return float(np.sqrt(np.mean(e)))


CASES = [(t, False) for t in ALL_TYPES if not QTYPES[t].needs_imatrix] + [(t, True) for t in IMATRIX_TYPES]


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
    im = "energy" if QTYPES[qtype].needs_imatrix else None
    got = rmse(quants.dequantize(quants.quantize(gaussian, qtype, im), qtype), gaussian)
    assert got <= RMSE_BUDGET[qtype], f"{qtype.name}: RMSE {got:.5f} over budget {RMSE_BUDGET[qtype]}"


def test_energy_fallback_is_an_imatrix(ggml, heavy_tailed):
    energy = quants.weight_energy(heavy_tailed)
    assert np.allclose(energy, np.mean(heavy_tailed.astype(np.float64) ** 2, axis=0), rtol=1e-6)
    ours = quants.quantize(heavy_tailed, T.IQ2_XXS, "energy")
    assert np.array_equal(ours, ggml.quantize(heavy_tailed, T.IQ2_XXS, energy))


@pytest.mark.parametrize("with_imatrix", [False, True])
@pytest.mark.parametrize("qtype", [T.IQ3_XXS, T.IQ3_S], ids=lambda t: t.name)
def test_iq3_zero_subblocks_vs_ggml(ggml, make_imatrix, gaussian, qtype, with_imatrix):
    """All-zero and near-zero 32-value sub-blocks: IQ3_XXS skips those under 1e-8, IQ3_S exact zeros
    and then (as ggml) does not advance its qs/signs slots; the bytes must still be ggml's."""
    x = gaussian[:16].copy()
    for r in range(16):
        x[r, 32 * (r % 8) : 32 * (r % 8) + 32] = 0.0 if r % 3 else 1e-9  # a different sub-block per row
    x[5, :256] = 0.0  # a whole zero super-block
    x[7, 256:] = 0.0
    im = make_imatrix(x) if with_imatrix else None
    ours = quants.quantize(x, qtype, im).view(np.uint8).reshape(x.shape[0], -1)
    assert np.array_equal(ours, ggml.quantize(x, qtype, im)), qtype.name


def test_tensor_shapes_follow_gguf_conventions(gaussian):
    x = np.ascontiguousarray(gaussian.reshape(4, 12, 1024))
    q = quants.quantize(x, T.Q4_K)
    assert q.shape == (4, 12, 1024 // 256 * 144) and q.dtype == np.uint8
    assert quants.dequantize(q, T.Q4_K).shape == x.shape
    assert quants.quantize(x, T.F16).dtype == np.float16
    assert quants.quantize(x, T.F32).dtype == np.float32
    assert np.array_equal(quants.dequantize(quants.quantize(x, T.F32), T.F32), x)


@pytest.mark.parametrize("qtype", [T.IQ1_S, T.IQ1_M], ids=lambda t: t.name)
def test_iq1_adversarial_rows_vs_ggml(ggml, qtype):
    """The IQ1 split search sorts each sub-block (tied values keep their index order, as ggml's qsort),
    skips (near-)zero sub-blocks and falls back to grid neighbours: ties, zeros, constants, 1e-30 and 1e4
    rows, and an imatrix with zero entries, give ggml's bytes."""
    rng = np.random.default_rng(7)
    cols = 768
    rows = [
        np.zeros(cols),
        np.full(cols, 0.75),
        np.where(np.arange(cols) % 97 == 3, 40.0, rng.normal(0, 0.01, cols)),
        rng.normal(0, 1e-30, cols),
        np.round(rng.normal(0, 2, cols) * 2) / 2,
        -np.abs(rng.standard_normal(cols)),
        rng.standard_normal(cols) * 1e4,
        np.where(np.arange(cols) < 256, 0.0, rng.standard_normal(cols)),
    ]
    x = np.asarray(rows, dtype=np.float32)
    im = np.exp(rng.normal(0, 1, cols)).astype(np.float32)
    im[::5] = 0.0
    for w in (im, None) if qtype == T.IQ1_M else (im,):
        ours = quants.quantize(x, qtype, w).view(np.uint8).reshape(x.shape[0], -1)
        theirs = ggml.quantize(x, qtype, w)
        bad = np.unique(np.nonzero(ours != theirs)[0])
        assert bad.size == 0, f"{qtype.name} (imatrix={w is not None}): rows {bad} differ from ggml"


@pytest.mark.parametrize(
    "qtype,with_imatrix",
    [(T.IQ2_XS, True), (T.IQ2_S, False), (T.IQ2_S, True)],
    ids=lambda v: v.name if isinstance(v, T) else str(v),
)
def test_iq2_xs_s_adversarial_rows_vs_ggml(ggml, qtype, with_imatrix):
    """IQ2_XS / IQ2_S on rows that reach every branch of the search: 16-value groups under and just over
    IQ2_S's 1e-8 zero threshold (IQ2_XS's is 1e-15), zero, constant and spiky rows, odd sign counts (IQ2_XS
    flips the least important one), huge and tiny magnitudes, an imatrix with zero entries: ggml's bytes."""
    rng = np.random.default_rng(9)
    cols = 768
    group = np.arange(cols) // 16
    rows = [
        np.zeros(cols),
        np.full(cols, -0.75),
        np.where(np.arange(cols) % 97 == 3, 40.0, rng.normal(0, 0.01, cols)),
        rng.normal(0, 1e-30, cols),
        rng.normal(0, 1e-9, cols),  # every group under 1e-8
        np.where(group % 2 == 0, rng.normal(0, 1e-9, cols), rng.normal(0, 1e-7, cols)),  # alternate sides
        np.where(group % 3 == 0, 0.0, rng.standard_normal(cols)),
        np.round(rng.normal(0, 2, cols) * 2) / 2,
        rng.standard_normal(cols) * 1e4,
        np.where(np.arange(cols) % 8 == 0, -1.0, 1.0) * np.abs(rng.standard_normal(cols)),  # one negative per 8
    ]
    x = np.asarray(rows, dtype=np.float32)
    im = None
    if with_imatrix:
        im = np.exp(rng.normal(0, 1, cols)).astype(np.float32)
        im[::5] = 0.0
    ours = quants.quantize(x, qtype, im).view(np.uint8).reshape(x.shape[0], -1)
    theirs = ggml.quantize(x, qtype, im)
    bad = np.unique(np.nonzero(ours != theirs)[0])
    assert bad.size == 0, f"{qtype.name} (imatrix={with_imatrix}): rows {bad} differ from ggml"
