"""The CUDA kernels' per-thread logic (the GEMV's lane work + warp reduction, mHC Sinkhorn, the compressor
state machine, the bitonic top-k network: runtime/ops_cuda/dequant.cuh, logic.cuh) against float64/numpy
definitions of the CPU ops.  Each body runs twice: the
kernel code executed on the host (every build with nvcc, no device needed) and the kernels on device 0
(skipped with the no-CUDA-device reason without one)."""

from __future__ import annotations

import numpy as np
import pytest
from ci_policy import needs_cuda_build, needs_cuda_device

from dsv4_gguf import _C
from dsv4_gguf.reference.tolerances import assert_close

pytestmark = needs_cuda_build
WHERE = ["host", pytest.param("device", marks=needs_cuda_device)]


TYPES = {"F32": 0, "F16": 1, "BF16": 30, "Q8_0": 8, "MXFP4": 39, "Q4_K": 12, "Q6_K": 14}


def weights(qtype: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stored bytes [rows, row_bytes], CPU-decoded f32)."""
    import ml_dtypes

    rows = w.shape[0]
    if qtype == 0:
        return w.view(np.uint8).reshape(rows, -1), w
    if qtype in (1, 30):
        h = w.astype(np.float16 if qtype == 1 else ml_dtypes.bfloat16)
        return h.view(np.uint8).reshape(rows, -1), h.astype(np.float32)
    q = _C.quantize_rows(qtype, w)
    return q, _C.dequantize_rows(qtype, q).reshape(w.shape)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("name", list(TYPES))
@pytest.mark.parametrize("rows,cols,n_vec", [(300, 1024, 1), (64, 4096, 3), (17, 512, 8), (9, 768, 2)])
def test_gemv(where, name, rows, cols, n_vec):
    """Full and partial staged chunks (MXFP4 stages 128 blocks: 4096 cols = 1 chunk, 768 = a partial one)."""
    qt = TYPES[name]
    if cols % 256 and qt in (12, 14):
        cols = 1024
    rng = np.random.default_rng(rows + cols)
    q, wd = weights(qt, rng.standard_normal((rows, cols)).astype(np.float32))
    x = (rng.standard_normal((n_vec, cols)) / np.sqrt(cols)).astype(np.float32)
    got = _C.cuda_hooks.gemv(qt, q, x, on_host=where == "host")
    assert_close(got, x.astype(np.float64) @ wd.astype(np.float64).T, "cuda_gemv", f"gemv {name} ({where})")


def hc_coeffs_ref(m: np.ndarray, scale: np.ndarray, base: np.ndarray, iters: int = 20, eps: float = 1e-6):
    m = m.astype(np.float64)
    sig = lambda v: 1 / (1 + np.exp(-v))  # noqa: E731
    pre = sig(m[:, :4] * scale[0] + base[:4]) + eps
    post = 2 * sig(m[:, 4:8] * scale[1] + base[4:8])
    c = (m[:, 8:] * scale[2] + base[8:]).reshape(-1, 4, 4)
    c = np.exp(c - c.max(-1, keepdims=True))
    c = c / c.sum(-1, keepdims=True) + eps
    c = c / (c.sum(1, keepdims=True) + eps)
    for _ in range(iters - 1):
        c = c / (c.sum(2, keepdims=True) + eps)
        c = c / (c.sum(1, keepdims=True) + eps)
    return pre, post, c


@pytest.mark.parametrize("where", WHERE)
def test_hc_coeffs_sinkhorn(where):
    rng = np.random.default_rng(4)
    mixes = rng.standard_normal((7, 24)).astype(np.float32)
    scale = np.array([0.5, 0.7, 1.3], np.float32)
    base = rng.standard_normal(24).astype(np.float32)
    pre, post, comb = _C.cuda_hooks.hc_coeffs(mixes, scale, base, 4, 20, 1e-6, on_host=where == "host")
    rpre, rpost, rcomb = hc_coeffs_ref(mixes, scale.astype(np.float64), base.astype(np.float64))
    assert_close(pre, rpre, "cuda_op", "pre")
    assert_close(post, rpost, "cuda_op", "post")
    assert_close(comb.reshape(7, 4, 4), rcomb, "cuda_op", "comb")
    assert_close(comb.reshape(7, 4, 4).sum(1), np.ones((7, 4)), "sinkhorn", "column sums")


def compressor_ref(m: int, d: int, a: np.ndarray, g: np.ndarray) -> np.ndarray:
    """Pooled entries of blocks completed by tokens 0..T-1 from a fresh state (official ``Compressor``: per-channel
    softmax over the block's slots, m = 4 also over the previous block's)."""
    out = []
    for j in range(a.shape[0] // m):
        cur = slice(j * m, (j + 1) * m)
        if m == 4:
            prev = slice((j - 1) * m, j * m)
            sc = np.concatenate([g[prev, :d] if j else np.full((m, d), -np.inf), g[cur, d:]]).astype(np.float64)
            vv = np.concatenate([a[prev, :d] if j else np.zeros((m, d)), a[cur, d:]]).astype(np.float64)
        else:
            sc, vv = g[cur].astype(np.float64), a[cur].astype(np.float64)
        p = np.exp(sc - sc.max(0))
        out.append((p / p.sum(0) * vv).sum(0))
    return np.array(out).reshape(-1, d)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("m", [4, 128])
def test_compressor_state_machine(where, m):
    rng = np.random.default_rng(9)
    d = 64
    coff = 2 if m == 4 else 1
    T = 3 * m + 3  # three complete blocks and a partial one
    a = rng.standard_normal((T, coff * d)).astype(np.float32)
    g = rng.standard_normal((T, coff * d)).astype(np.float32)
    got = _C.cuda_hooks.compressor_run(m, d, a, g, 0, on_host=where == "host")
    assert got.shape == (T // m, d)
    assert_close(got, compressor_ref(m, d, a, g), "cuda_op", f"compressor m={m}")


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("n,k", [(0, 4), (5, 8), (8, 8), (700, 64), (5000, 512)])
def test_topk_order_and_ties(where, n, k):
    rng = np.random.default_rng(n + k)
    score = rng.standard_normal(n).astype(np.float32)
    if n > 20:
        score[rng.choice(n, n // 4, replace=False)] = 0.5  # many exact ties: the lower id must win
    ids = _C.cuda_hooks.topk(score, k, on_host=where == "host")
    kk = min(k, n)
    want = np.sort(np.argsort(-score, kind="stable")[:kk])  # the CPU runtime's stable order
    np.testing.assert_array_equal(ids[:kk], want)
    assert (ids[kk:] == -1).all()
