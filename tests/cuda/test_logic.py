"""The CUDA kernels' per-thread logic (the GEMV's lane work + warp reduction, mHC Sinkhorn, the compressor
state machine, the bitonic top-k network, RMSNorm with its block reduction, RoPE, FP8/FP4 fake-quant, the router's
warp top-k, SwiGLU: runtime/ops_cuda/dequant.cuh, logic.cuh and the math it shares with the CPU ops,
runtime/ops_shared.h) against float64/numpy/ml_dtypes definitions and against the CPU runtime's ops
(``cuda_hooks.cpu_*``: bit for bit where the arithmetic is shared).  Each body runs twice: the kernel code
executed on the host (every build with nvcc, no device needed) and the kernels on device 0 (skipped with the
no-CUDA-device reason without one)."""

from __future__ import annotations

import ml_dtypes
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


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal as float32 bit patterns (so -0.0 != 0.0)."""
    a, b = np.ascontiguousarray(a, np.float32), np.ascontiguousarray(b, np.float32)
    return a.shape == b.shape and bool((a.view(np.uint32) == b.view(np.uint32)).all())


# ---- FP8 / FP4 fake-quant: e4m3_round, e2m1_round, block scales (runtime/ops_shared.h) ----

E4M3 = np.arange(0x7F, dtype=np.uint8).view(ml_dtypes.float8_e4m3fn).astype(np.float32)  # every finite code >= 0
E2M1 = np.array([0, 0.5, 1, 1.5, 2, 3, 4, 6], np.float32)
FORMATS = {"e4m3": (E4M3, 64, False, ml_dtypes.float8_e4m3fn), "e2m1": (E2M1, 32, True, ml_dtypes.float4_e2m1fn)}


def grid_edges(grid: np.ndarray) -> np.ndarray:
    """Every grid value, every midpoint between neighbours (a tie: to the even code) and the floats either side
    of each midpoint, with both signs (-0.0 included)."""
    mid = (grid[1:] + grid[:-1]) / np.float32(2)  # exact: one mantissa bit more than the format
    v = np.concatenate([grid, mid, np.nextafter(mid, np.float32(0)), np.nextafter(mid, np.float32(np.inf))])
    return np.concatenate([v, -v]).astype(np.float32)


def fake_quant_ref(x: np.ndarray, block: int, fp4: bool) -> np.ndarray:
    """Official act_quant / fp4_act_quant on float32 blocks: scale 2^ceil(log2(max(amax, floor) * (1/lim))) (the
    product in float32, as the ops), x / scale clamped and cast to the format by ml_dtypes (round to nearest even)."""
    lim, dt = (6.0, ml_dtypes.float4_e2m1fn) if fp4 else (448.0, ml_dtypes.float8_e4m3fn)
    floor = np.float32(6.0 * 2.0**-126 if fp4 else 1e-4)
    g = x.reshape(-1, block).astype(np.float32)
    amax = np.maximum(np.abs(g).max(-1, keepdims=True), floor) * (np.float32(1) / np.float32(lim))
    s = (2.0 ** np.ceil(np.log2(amax.astype(np.float64)))).astype(np.float32)
    return (np.clip(g / s, -lim, lim).astype(dt).astype(np.float32) * s).reshape(x.shape)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fake_quant_rounds_every_grid_edge(where, fmt):
    """Blocks that each hold the format's largest value (scale 1), so the edge values meet the rounding itself:
    bit-exact vs ml_dtypes' cast (ties to even) and, on the host, vs the CPU runtime's fake-quant."""
    grid, block, fp4, dt = FORMATS[fmt]
    edges = grid_edges(grid)
    per = block - 1
    pad = (-len(edges)) % per
    rng = np.random.default_rng(len(edges))
    fill = rng.uniform(-grid[-1], grid[-1], pad).astype(np.float32)
    vals = np.concatenate([edges, fill]).reshape(-1, per)
    x = np.concatenate([np.full((len(vals), 1), grid[-1], np.float32), vals], 1)  # one block per row
    got = _C.cuda_hooks.fake_quant(x, block, fp4, on_host=where == "host")
    want = x.astype(dt).astype(np.float32)
    assert same_bits(got, want), f"{fmt}: {np.flatnonzero(got.view(np.uint32) != want.view(np.uint32))[:8]}"
    assert same_bits(got, fake_quant_ref(x, block, fp4))
    if where == "host":
        assert same_bits(got, _C.cuda_hooks.cpu_fake_quant(x, block, fp4))


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("fmt", list(FORMATS))
def test_fake_quant_block_scales(where, fmt):
    """Random blocks over eight decades of magnitude (scales far from 1, all-zero and tiny blocks at the floor)."""
    _, block, fp4, _ = FORMATS[fmt]
    rng = np.random.default_rng(3 if fp4 else 4)
    x = rng.standard_normal((12, 256)).astype(np.float32) * (10.0 ** np.arange(-4, 4, 2 / 3)[:12, None]).astype(
        np.float32
    )
    x[0, :block] = 0.0
    x[1, :block] *= np.float32(1e-30)
    got = _C.cuda_hooks.fake_quant(x, block, fp4, on_host=where == "host")
    assert same_bits(got, fake_quant_ref(x, block, fp4))
    if where == "host":
        assert same_bits(got, _C.cuda_hooks.cpu_fake_quant(x, block, fp4))


# ---- RMSNorm (block sum in the device's order), RoPE pairs ----


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("n", [100, 512, 4096])
def test_rms_norm_block_reduction(where, n):
    """n < 256 leaves threads idle; 4096 gives each thread 16 terms.  The CPU sums sequentially, the kernel per
    thread then in a block tree, so the two agree to rounding, each with float64; the host runner replays the
    kernel's fused partial sums and tree, so on a device the kernel gives its bits (IEEE sqrt and division)."""
    rng = np.random.default_rng(n)
    x = rng.standard_normal((5, n)).astype(np.float32)
    w = rng.standard_normal(n).astype(np.float32)
    ref = x / np.sqrt((x.astype(np.float64) ** 2).mean(-1, keepdims=True) + 1e-6)
    for wt, r in ((w, ref * w), (None, ref)):
        got = _C.cuda_hooks.rms_norm(x, wt, 1e-6, on_host=where == "host")
        assert_close(got, r, "cuda_op", f"rms_norm n={n} weight={wt is not None}")
        assert_close(got, _C.cuda_hooks.cpu_rms_norm(x, wt, 1e-6), "cuda_op", "rms_norm vs the CPU runtime")
        if where == "device":
            assert same_bits(got, _C.cuda_hooks.rms_norm(x, wt, 1e-6, on_host=True))


def rope_ref(x: np.ndarray, rd: int, pos0: int, rows_per_pos: int, freqs: np.ndarray, inverse: bool) -> np.ndarray:
    """Pairs of the last rd dims rotated by the float32 angle pos * freq (the ops' fp32 product), in float64."""
    out = x.astype(np.float64).copy()
    n = x.shape[1]
    for r in range(x.shape[0]):
        ang = (np.float32(pos0 + r // rows_per_pos) * freqs).astype(np.float64)
        c, s = np.cos(ang), (-1 if inverse else 1) * np.sin(ang)
        a, b = out[r, n - rd :: 2].copy(), out[r, n - rd + 1 :: 2].copy()
        out[r, n - rd :: 2] = a * c - b * s
        out[r, n - rd + 1 :: 2] = a * s + b * c
    return out


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("rows_per_pos,pos0", [(1, 0), (2, 1000), (4, 65530)])
def test_rope_tail_pairs(where, rows_per_pos, pos0):
    rng = np.random.default_rng(pos0)
    n, rd = 192, 64
    x = rng.standard_normal((8, n)).astype(np.float32)
    freqs = (1.0 / 10000 ** (np.arange(rd // 2) * 2 / rd)).astype(np.float32)
    on_host = where == "host"
    got = _C.cuda_hooks.rope_tail(x, rd, pos0, rows_per_pos, freqs, False, on_host=on_host)
    assert same_bits(got[:, : n - rd], x[:, : n - rd])  # the no-rope dims are left alone
    assert_close(got, rope_ref(x, rd, pos0, rows_per_pos, freqs, False), "cuda_op", "rope")
    back = _C.cuda_hooks.rope_tail(got, rd, pos0, rows_per_pos, freqs, True, on_host=on_host)
    assert_close(back, rope_ref(got, rd, pos0, rows_per_pos, freqs, True), "cuda_op", "inverse rope")
    if on_host:
        assert same_bits(got, _C.cuda_hooks.cpu_rope_tail(x, rd, pos0, rows_per_pos, freqs, False))
        assert same_bits(back, _C.cuda_hooks.cpu_rope_tail(got, rd, pos0, rows_per_pos, freqs, True))


# ---- the router (warp top-k) and SwiGLU ----


def route_ref(logits: np.ndarray, k: int, bias: np.ndarray | None, scale: float):
    """float64 scores sqrt(softplus), stable descending order of score + bias, normalised weights x scale, and
    the margin (k-th minus (k+1)-th biased score)."""
    score = np.sqrt(np.log1p(np.exp(logits.astype(np.float64))))
    sel = score + (0.0 if bias is None else bias.astype(np.float64))
    order = np.argsort(-sel, axis=1, kind="stable")
    idx = order[:, :k]
    chosen = np.take_along_axis(score, idx, 1)
    sorted_sel = np.take_along_axis(sel, order, 1)
    margin = sorted_sel[:, k - 1] - sorted_sel[:, k]
    return idx, chosen / chosen.sum(1, keepdims=True) * scale, margin


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("biased", [False, True])
@pytest.mark.parametrize("E,K", [(256, 6), (72, 8), (20, 4)])
def test_route_warp_topk(where, biased, E, K):
    """E a multiple of 32, not one, and under one warp; tokens 0, 2, 4, ... take logits from a small set so
    that many scores tie exactly (the lower expert id must win, as the CPU's stable order)."""
    rng = np.random.default_rng(E + K + biased)
    T = 9
    logits = rng.standard_normal((T, E)).astype(np.float32)
    logits[::2] = rng.integers(-2, 3, (len(logits[::2]), E)).astype(np.float32) / 2
    bias = (rng.standard_normal(E) * 0.1).astype(np.float32) if biased else None
    idx, w = _C.cuda_hooks.route(logits, K, bias, None, None, 1.5, True, on_host=where == "host")
    ridx, rw, rmargin = route_ref(logits, K, bias, 1.5)
    np.testing.assert_array_equal(idx, ridx)
    assert_close(w, rw, "cuda_op", "route weights")
    cidx, cw, cmargin = _C.cuda_hooks.cpu_route(logits, K, bias, None, None, 1.5, True)
    np.testing.assert_array_equal(cidx, ridx)
    assert_close(cmargin, rmargin, "cuda_op", "CPU router margin")
    if where == "host":  # same score, same choice, same weight arithmetic as the CPU runtime
        assert same_bits(w, cw)
    _, w_raw = _C.cuda_hooks.route(logits, K, bias, None, None, 2.0, False, on_host=where == "host")
    score = np.sqrt(np.log1p(np.exp(logits.astype(np.float64))))
    assert_close(w_raw, np.take_along_axis(score, ridx, 1) * 2.0, "cuda_op", "unnormalised route weights")


@pytest.mark.parametrize("where", WHERE)
def test_route_hash_layers(where):
    rng = np.random.default_rng(12)
    T, E, K = 7, 64, 6
    logits = rng.standard_normal((T, E)).astype(np.float32)
    tid2eid = rng.integers(0, E, (50, K)).astype(np.int32)
    toks = rng.integers(0, 50, T).astype(np.int32)
    idx, w = _C.cuda_hooks.route(logits, K, None, tid2eid, toks, 1.5, True, on_host=where == "host")
    np.testing.assert_array_equal(idx, tid2eid[toks])
    chosen = np.take_along_axis(np.sqrt(np.log1p(np.exp(logits.astype(np.float64)))), idx.astype(np.int64), 1)
    assert_close(w, chosen / chosen.sum(1, keepdims=True) * 1.5, "cuda_op", "hash route weights")
    cidx, cw, cmargin = _C.cuda_hooks.cpu_route(logits, K, None, tid2eid, toks, 1.5, True)
    np.testing.assert_array_equal(cidx, idx)
    assert np.isinf(cmargin).all()
    if where == "host":
        assert same_bits(w, cw)


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("limit", [10.0, 0.0])
def test_swiglu_clamp(where, limit):
    rng = np.random.default_rng(7)
    g, u = (rng.standard_normal((2, 3, 64)) * 8).astype(np.float32)
    wt = np.array([0.5, 1.0, 2.0], np.float32)
    gg, uu = g.astype(np.float64), u.astype(np.float64)
    if limit > 0:
        gg, uu = np.minimum(gg, limit), np.clip(uu, -limit, limit)
    silu = gg / (1 + np.exp(-gg)) * uu
    assert_close(
        _C.cuda_hooks.swiglu(g, u, wt, limit, on_host=where == "host"), wt[:, None] * silu, "cuda_op", "swiglu"
    )
    assert_close(_C.cuda_hooks.swiglu(g, u, None, limit, on_host=where == "host"), silu, "cuda_op", "swiglu, no wt")


def test_host_runner_argument_errors():
    x = np.zeros((2, 64), np.float32)
    with pytest.raises(ValueError, match="block"):
        _C.cuda_hooks.fake_quant(x, 0, True, on_host=True)
    with pytest.raises(ValueError, match="block"):
        _C.cuda_hooks.cpu_fake_quant(x, 48, False)
    with pytest.raises(ValueError, match="even rd"):
        _C.cuda_hooks.rope_tail(x, 7, 0, 1, np.zeros(3, np.float32), False, on_host=True)
    with pytest.raises(ValueError, match="freqs"):
        _C.cuda_hooks.rope_tail(x, 8, 0, 1, np.zeros(3, np.float32), False, on_host=True)
    with pytest.raises(ValueError, match="K <= min"):
        _C.cuda_hooks.route(x, 33, None, None, None, 1.0, True, on_host=True)
    tid2eid = np.zeros((5, 2), np.int32)
    with pytest.raises(ValueError, match="outside tid2eid"):
        _C.cuda_hooks.route(x, 2, None, tid2eid, np.array([0, 5], np.int32), 1.0, True, on_host=True)
