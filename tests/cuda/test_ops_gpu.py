"""CUDA ops on device 0 against float64 / numpy definitions of the CPU ops (mHC, attention, MoE routing, the QAT
fake-quant of the official inference/model.py and kernel.py).  Every test skips with the no-CUDA-device reason
where no device is visible; benchmarks/device_check.sh builds with CUDA and runs them on a GPU machine.
The Sinkhorn, compressor and top-k logic is in test_logic.py (host and device)."""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from ci_policy import needs_cuda_device

from dsv4_gguf import _C
from dsv4_gguf.reference.tolerances import assert_close

pytestmark = needs_cuda_device

TYPES = {"F32": 0, "F16": 1, "BF16": 30, "Q8_0": 8, "MXFP4": 39, "Q4_K": 12, "Q6_K": 14}


def _weights(qtype: int, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stored bytes [rows, row_bytes], CPU-decoded f32)."""
    rows = w.shape[0]
    if qtype == 0:
        return w.view(np.uint8).reshape(rows, -1), w
    if qtype == 1:
        h = w.astype(np.float16)
        return h.view(np.uint8).reshape(rows, -1), h.astype(np.float32)
    if qtype == 30:
        h = w.astype(ml_dtypes.bfloat16)
        return h.view(np.uint8).reshape(rows, -1), h.astype(np.float32)
    q = _C.quantize_rows(qtype, w)
    return q, _C.dequantize_rows(qtype, q).reshape(w.shape)


@pytest.mark.parametrize("name", ["Q8_0", "BF16"])
def test_gemv_unaligned_rows_use_byte_staging(name):
    qt, cols = TYPES[name], 96  # Q8_0: 102-byte rows (2-byte aligned: 1-byte staging), BF16: 192 (16-byte)
    rng = np.random.default_rng(5)
    q, wd = _weights(qt, rng.standard_normal((40, cols)).astype(np.float32))
    assert _C.cuda_hooks.gemv_config(qt, 40, cols)["load_bytes"] == (16 if name == "BF16" else 1)
    x = (rng.standard_normal((2, cols)) / np.sqrt(cols)).astype(np.float32)
    assert_close(_C.cuda_hooks.gemv(qt, q, x), x.astype(np.float64) @ wd.astype(np.float64).T, "cuda_gemv", name)


@pytest.mark.parametrize("name", ["MXFP4", "Q8_0", "Q4_K"])
def test_moe_gemv_reads_the_selected_experts(name):
    qt, E, rows, cols = TYPES[name], 8, 96, 512
    rng = np.random.default_rng(11)
    q, wd = _weights(qt, rng.standard_normal((E * rows, cols)).astype(np.float32))
    ids = np.array([5, 0, 7, -1, 5, 2], np.int32)  # a repeat and a skipped slot
    x = (rng.standard_normal((len(ids), cols)) / np.sqrt(cols)).astype(np.float32)
    got = _C.cuda_hooks.moe_gemv(qt, q, rows, ids, x)
    for i, e in enumerate(ids):
        ref = np.zeros(rows) if e < 0 else wd[e * rows : (e + 1) * rows].astype(np.float64) @ x[i]
        assert_close(got[i], ref, "cuda_gemv", f"slot {i} expert {e}")


def test_rms_norm_and_rope():
    rng = np.random.default_rng(1)
    x = rng.standard_normal((6, 512)).astype(np.float32)
    w = rng.standard_normal(512).astype(np.float32)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6) * w
    assert_close(_C.cuda_hooks.rms_norm(x, w, 1e-6), ref, "cuda_op", "rms_norm")
    assert_close(_C.cuda_hooks.rms_norm(x, None, 1e-6), ref / w, "cuda_op", "rms_norm without weight")
    freqs = (1.0 / 10000 ** (np.arange(32) * 2 / 64)).astype(np.float32)
    got = _C.cuda_hooks.rope_tail(x, 64, 1000, 2, freqs, False)  # rows 2i, 2i+1 at position 1000 + i
    ref = x.astype(np.float64).copy()
    for r in range(6):
        ang = (np.float32(1000 + r // 2) * freqs).astype(np.float64)  # the ops' float32 angle product
        a, b = ref[r, 448::2].copy(), ref[r, 449::2].copy()
        ref[r, 448::2] = a * np.cos(ang) - b * np.sin(ang)
        ref[r, 449::2] = a * np.sin(ang) + b * np.cos(ang)
    assert_close(got, ref, "cuda_op", "rope")
    back = _C.cuda_hooks.rope_tail(got, 64, 1000, 2, freqs, True)
    assert_close(back, x, "cuda_op", "inverse rope")


def _fake_quant_ref(x: np.ndarray, block: int, fp4: bool) -> np.ndarray:
    lim, dt = (6.0, ml_dtypes.float4_e2m1fn) if fp4 else (448.0, ml_dtypes.float8_e4m3fn)
    floor = 6.0 * 2.0**-126 if fp4 else 1e-4
    g = x.reshape(-1, block).astype(np.float32)
    amax = np.maximum(np.abs(g).max(-1, keepdims=True), np.float32(floor)) / np.float32(lim)
    s = (2.0 ** np.ceil(np.log2(amax.astype(np.float64)))).astype(np.float32)
    return (np.clip(g / s, -lim, lim).astype(dt).astype(np.float32) * s).reshape(x.shape)


@pytest.mark.parametrize("fp4,block", [(False, 64), (True, 32)])
def test_fake_quant(fp4, block):
    x = (np.random.default_rng(2).standard_normal((4, 256)) * 3).astype(np.float32)
    np.testing.assert_array_equal(_C.cuda_hooks.fake_quant(x, block, fp4), _fake_quant_ref(x, block, fp4))


def test_hadamard():
    x = np.random.default_rng(3).standard_normal((5, 128)).astype(np.float32)
    h = np.array([[1.0]])
    while h.shape[0] < 128:
        h = np.block([[h, h], [h, -h]])
    assert_close(_C.cuda_hooks.hadamard(x), x.astype(np.float64) @ h.T / np.sqrt(128), "cuda_op", "hadamard")


def test_route_bias_and_hash():
    rng = np.random.default_rng(6)
    T, E, K = 9, 256, 6
    logits = rng.standard_normal((T, E)).astype(np.float32)
    bias = (rng.standard_normal(E) * 0.1).astype(np.float32)
    idx, w = _C.cuda_hooks.route(logits, K, bias, None, None, 1.5, True)
    score = np.sqrt(np.log1p(np.exp(logits.astype(np.float64))))
    for t in range(T):
        order = np.argsort(-(score[t] + bias), kind="stable")[:K]
        np.testing.assert_array_equal(idx[t], order)
        assert_close(w[t], score[t, order] / score[t, order].sum() * 1.5, "cuda_op", "route weights")
    tid2eid = rng.integers(0, E, (50, K)).astype(np.int32)
    toks = rng.integers(0, 50, T).astype(np.int32)
    idx, w = _C.cuda_hooks.route(logits, K, None, tid2eid, toks, 1.5, True)
    np.testing.assert_array_equal(idx, tid2eid[toks])


def test_swiglu_clamp():
    rng = np.random.default_rng(7)
    g, u = (rng.standard_normal((2, 3, 64)) * 8).astype(np.float32)
    wt = np.array([0.5, 1.0, 2.0], np.float32)
    gg, uu = np.minimum(g, 10.0).astype(np.float64), np.clip(u, -10, 10).astype(np.float64)
    ref = wt[:, None] * gg / (1 + np.exp(-gg)) * uu
    assert_close(_C.cuda_hooks.swiglu(g, u, wt, 10.0), ref, "cuda_op", "swiglu")


def test_sparse_attention_window_compressed_sink():
    rng = np.random.default_rng(8)
    H, hd, win, p = 4, 512, 128, 300
    q = (rng.standard_normal((H, hd)) / 8).astype(np.float32)
    window = rng.standard_normal((win, hd)).astype(np.float32)
    comp = rng.standard_normal((20, hd)).astype(np.float32)
    ids = np.array([3, -1, 17, 0], np.int32)
    sinks = rng.standard_normal(H).astype(np.float32)
    got = _C.cuda_hooks.sparse_attention(q, window, p, comp, ids, sinks, hd**-0.5)
    keys = np.concatenate([window[[qp % win for qp in range(p - win + 1, p + 1)]], comp[[3, 17, 0]]]).astype(np.float64)
    z = q.astype(np.float64) @ keys.T * hd**-0.5
    mx = z.max(-1, keepdims=True)
    e = np.exp(z - mx)
    ref = e @ keys / (e.sum(-1, keepdims=True) + np.exp(sinks[:, None] - mx))
    assert_close(got, ref, "cuda_op", "sparse attention")


@pytest.mark.parametrize("n,k", [(5, 8), (700, 64), (5000, 512)])
def test_indexer_scores_and_topk(n, k):
    rng = np.random.default_rng(n)
    nh, dI = 64, 128
    q = rng.standard_normal((nh, dI)).astype(np.float32)
    w = rng.standard_normal(nh).astype(np.float32)
    keys = rng.standard_normal((n, dI)).astype(np.float32)
    scores, ids = _C.cuda_hooks.indexer_topk(q, w, keys, k)
    ref = (np.maximum(keys.astype(np.float64) @ q.T.astype(np.float64), 0) * w).sum(-1)
    assert_close(scores, ref, "cuda_index_score", "indexer scores")
    order = np.argsort(-scores, kind="stable")[: min(k, n)]  # the device scores' own order: ids are exact
    np.testing.assert_array_equal(ids[: min(k, n)], np.sort(order))
    assert (ids[min(k, n) :] == -1).all()
