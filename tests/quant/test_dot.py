"""Dot products of every weight type with its activation format (Q8_0 / Q8_1 / Q8_K / f32), against the
float64 dot of the dequantized weight and the dequantized activation, and against ggml's vec_dot."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from dsv4_gguf import quants
from dsv4_gguf.constants import QTYPES, WEIGHT_QTYPES

QUANTIZED = [t for t in WEIGHT_QTYPES if t not in (T.F32, T.F16, T.BF16)]


def setup(qtype: T, x: np.ndarray):
    im = "energy" if QTYPES[qtype].needs_imatrix else None
    w = quants.quantize(x, qtype, im).view(np.uint8).reshape(x.shape[0], -1)
    v = np.random.default_rng(int(qtype)).standard_normal(x.shape[1]).astype(np.float32)
    return w, v


def q8_1_min_term_rounding(w: np.ndarray, type_size: int, act: np.ndarray, a: np.ndarray) -> np.ndarray:
    """Q4_1/Q5_1 . Q8_1 (ggml's format): each weight block's min m meets the activation block's stored fp16
    s = d*sum(q8), not the exact sum of its dequantized values; per row this adds sum_b m_b*(s_b - sum(a_b))."""
    m = w.reshape(w.shape[0], -1, type_size)[:, :, 2:4].copy().view(np.float16)[:, :, 0].astype(np.float64)
    s = act.reshape(-1, 36)[:, 2:4].copy().view(np.float16)[:, 0].astype(np.float64)
    exact = a.astype(np.float64).reshape(-1, 32).sum(axis=1)
    return m @ (s - exact)


@pytest.mark.parametrize("qtype", WEIGHT_QTYPES, ids=lambda t: t.name)
def test_dot_equals_dequantized_float_dot(qtype, heavy_tailed):
    w, v = setup(qtype, heavy_tailed)
    y = quants.matvec(w, v, qtype)
    wd = quants.dequantize(w, qtype).astype(np.float64)
    at = QTYPES[qtype].vec_dot_type
    aq = None if at == T.F32 else quants.quantize(v[None], at)
    a = v if aq is None else quants.dequantize(aq, at)[0]
    want = wd @ a.astype(np.float64)
    if at == T.Q8_1:
        want += q8_1_min_term_rounding(w, QTYPES[qtype].type_size, aq.view(np.uint8).reshape(-1), a)
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
