"""The tiled rows x tokens products of the K-quant types (csrc/quant/gemm_k_avx512.cpp: Q4_K, Q5_K, Q6_K, each
weight super-block decoded once for up to 4 activation rows) equal the scalar reference one-row dot bit for bit,
on weight blocks of random bytes (every code, every scale byte, the int8 scales of Q6_K down to -128: the
integer sums at their extremes), at the head's width (one super-block per row, a batched decode's 1-4 tokens)
and wider rows, for every token count that leaves 1, 2 or 3 tokens past the last 4-token tile."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as T

from dsv4_gguf import _C, quants
from dsv4_gguf.constants import QTYPES

LEVELS = [lv for lv, on in (("avx2", _C.build_info()["cpu_avx2"]), ("avx512", _C.build_info()["cpu_avx512"])) if on]
pytestmark = pytest.mark.skipif(not LEVELS, reason="this CPU has no AVX2: only the reference path exists")

# byte offsets of the fp16 scales in each block (d, and dmin for Q4_K/Q5_K), set to finite values
F16_AT = {T.Q4_K: (0, 2), T.Q5_K: (0, 2), T.Q6_K: (208,)}


def random_blocks(qtype: T, rows: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    """``rows`` rows of random block bytes with finite fp16 scales of mixed sign and magnitude."""
    info = QTYPES[qtype]
    nb = cols // info.block_size
    raw = rng.integers(0, 256, (rows, nb, info.type_size), dtype=np.uint8)
    for at in F16_AT[qtype]:
        d = (rng.choice([-1.0, 1.0], (rows, nb)) * np.exp(rng.uniform(-12, 2, (rows, nb)))).astype(np.float16)
        raw[:, :, at : at + 2] = d[..., None].view(np.uint8)
    return raw.reshape(rows, nb * info.type_size)


def activations(ntok: int, cols: int, rng: np.random.Generator) -> np.ndarray:
    x = (rng.standard_normal((ntok, cols)) * rng.uniform(0.01, 30, (ntok, 1))).astype(np.float32)
    x[:, ::37] *= 50.0  # outliers: the int8 codes reach +-127 in every super-block
    if ntok > 2:
        x[2] = 0.0  # an all-zero row (zero scale)
    return x


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("qtype", [T.Q4_K, T.Q5_K, T.Q6_K], ids=lambda t: t.name)
@pytest.mark.parametrize("cols", [256, 1280])
def test_k_tiles_equal_reference_dot(qtype, cols, level):
    rng = np.random.default_rng(int(qtype) * 1000 + cols)
    rows = 141  # threads get 67-row chunks: the last one short
    w = random_blocks(qtype, rows, cols, rng)
    at = QTYPES[qtype].vec_dot_type
    x = activations(9, cols, rng)
    a = quants.quantize(x, at).view(np.uint8).reshape(9, -1)
    ref = np.array([[_C.vec_dot(int(qtype), w[r], a[t], cols, "ref") for r in range(rows)] for t in range(9)])
    ref = ref.astype(np.float32)
    assert np.isfinite(ref).all()
    for ntok in range(1, 10):
        got = quants.matmul(w, x[:ntok], qtype, impl=level, threads=2)
        assert got.shape == (ntok, rows)
        for t in range(ntok):
            bad = np.flatnonzero(got[t].view(np.uint32) != ref[t].view(np.uint32))
            assert bad.size == 0, (
                f"{qtype.name} {level} cols={cols} {ntok} tokens: token {t}, row {bad[0]}: "
                f"{got[t, bad[0]]!r} != ref {ref[t, bad[0]]!r}"
            )
