"""Dot products of every weight type with its activation format (Q8_0 / Q8_K / f32), against the
float64 dot of the dequantized weight and the dequantized activation, and against ggml's vec_dot."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from dsv4_gguf import quants
from dsv4_gguf.constants import QTYPES, WEIGHT_QTYPES

QUANTIZED = [t for t in WEIGHT_QTYPES if t not in (T.F32, T.F16, T.BF16)]


def setup(qtype: T, x: np.ndarray):
    im = "energy" if qtype == T.IQ2_XXS else None
    w = quants.quantize(x, qtype, im).view(np.uint8).reshape(x.shape[0], -1)
    v = np.random.default_rng(int(qtype)).standard_normal(x.shape[1]).astype(np.float32)
    return w, v


@pytest.mark.parametrize("qtype", WEIGHT_QTYPES, ids=lambda t: t.name)
def test_dot_equals_dequantized_float_dot(qtype, heavy_tailed):
    w, v = setup(qtype, heavy_tailed)
    y = quants.matvec(w, v, qtype)
    wd = quants.dequantize(w, qtype).astype(np.float64)
    at = QTYPES[qtype].vec_dot_type
    a = v if at == T.F32 else quants.dequantize(quants.quantize(v[None], at), at)[0]
    want = wd @ a.astype(np.float64)
    scale = np.abs(wd) @ np.abs(a.astype(np.float64))
    # float32 accumulation of exact per-block integer sums: error ~ (blocks) * 2^-24 * scale
    assert np.all(np.abs(y - want) <= 1e-5 * scale + 1e-30), f"{qtype.name}: dot off the dequantized float dot"
    # and the activation quantization error is what separates it from the exact float dot
    exact = wd @ v.astype(np.float64)
    assert np.all(np.abs(y - exact) <= 0.02 * np.abs(wd) @ np.abs(v.astype(np.float64)))


@pytest.mark.parametrize("qtype", QUANTIZED, ids=lambda t: t.name)
def test_dot_matches_ggml_vec_dot(ggml, qtype, gaussian):
    w, v = setup(qtype, gaussian)
    ours = quants.matvec(w, v, qtype)
    theirs = ggml.matvec(w, v, qtype)
    wd = quants.dequantize(w, qtype).astype(np.float64)
    scale = np.abs(wd) @ np.abs(v.astype(np.float64))
    assert np.all(np.abs(ours - theirs) <= 1e-5 * scale), qtype.name
