"""Unit checks of the reference's building blocks against hand-written brute force (issue 3, must-show 3):
Sinkhorn, YaRN, RoPE pairing, overlapping/non-overlapping compressor, indexer scores and top-k, hash
routing, SwiGLU clamp, attention with sink, FP8/FP4 fake-quant and the Hadamard transform."""

from __future__ import annotations

import math

import ml_dtypes
import numpy as np
import pytest
import torch

from dsv4_gguf.config import PRESETS
from dsv4_gguf.reference import RefOptions, Taps
from dsv4_gguf.reference.model import (
    Compressor,
    Expert,
    _Ctx,
    _rope_tail,
    apply_rotary_emb,
    e2m1_round,
    fp4_fake_quant,
    fp8_fake_quant,
    hadamard,
    hc_split_sinkhorn,
    rope_freqs,
    yarn_correction_range,
)

NOQAT = _Ctx(RefOptions(qat=False), None)


# ---- mHC ------------------------------------------------------------------------------------------


def _sinkhorn_loops(mixes, scale, base, hc=4, iters=20, eps=1e-6):
    """The official mHC coefficients (kernel.py ``hc_split_sinkhorn_kernel``: sigmoid pre/post, row softmax
    then alternating column/row normalisation of comb) in float64, written as plain loops."""
    out = []
    for m in mixes:
        C = np.array([[m[8 + 4 * j + k] * scale[2] + base[8 + 4 * j + k] for k in range(hc)] for j in range(hc)])
        C = np.exp(C - C.max(1, keepdims=True))
        C = C / C.sum(1, keepdims=True) + eps
        C = C / (C.sum(0, keepdims=True) + eps)
        for _ in range(iters - 1):
            C = C / (C.sum(1, keepdims=True) + eps)
            C = C / (C.sum(0, keepdims=True) + eps)
        pre = 1 / (1 + np.exp(-(m[:hc] * scale[0] + base[:hc]))) + eps
        post = 2 / (1 + np.exp(-(m[hc : 2 * hc] * scale[1] + base[hc : 2 * hc])))
        out.append((pre, post, C))
    return out


def test_sinkhorn_doubly_stochastic_and_order(close):
    """Columns are normalised last, so column sums are 1 to ~1e-6 for any input; row sums converge to
    1e-5 only for moderately spread logits (20 iterations, as in the official kernel): for logit spreads
    of a few units the rows stay off by up to ~5e-2 in float64 too, a property of the algorithm."""
    g = torch.Generator().manual_seed(0)
    scale = torch.tensor([1.0, 0.7, 1.3])
    base = torch.randn(24, generator=g) * 0.1
    mild = torch.randn(512, 24, generator=g) * 0.3
    _, _, comb = hc_split_sinkhorn(mild, scale, base, 4, 20, 1e-6)
    close(comb.sum(-1), torch.ones(512, 4), "sinkhorn", "Sinkhorn row sums (mild logits)")
    close(comb.sum(-2), torch.ones(512, 4), "sinkhorn", "Sinkhorn column sums (mild logits)")
    wild = torch.randn(512, 24, generator=g) * 4
    pre, post, comb = hc_split_sinkhorn(wild, scale, base, 4, 20, 1e-6)
    close(comb.sum(-2), torch.ones(512, 4), "sinkhorn", "Sinkhorn column sums (peaked logits)")
    ref = _sinkhorn_loops(wild.double().numpy(), scale.double().numpy(), base.double().numpy())
    close(comb, np.stack([r[2] for r in ref]), "unit_fp32", "Sinkhorn comb vs plain loop")
    close(pre, np.stack([r[0] for r in ref]), "unit_fp32", "mHC pre vs plain loop")
    close(post, np.stack([r[1] for r in ref]), "unit_fp32", "mHC post vs plain loop")
    # a hand case: all-equal logits give the uniform matrix
    _, _, u = hc_split_sinkhorn(torch.zeros(1, 24), torch.ones(3), torch.zeros(24), 4, 20, 1e-6)
    close(u[0], torch.full((4, 4), 0.25), "sinkhorn", "Sinkhorn uniform case")


def test_hc_post_consumes_comb_transposed(small_model):
    blk = small_model.layers[0]
    x = torch.randn(1, 1, 8)
    res = torch.randn(1, 1, 4, 8)
    post = torch.rand(1, 1, 4)
    comb = torch.rand(1, 1, 4, 4)
    y = blk.hc_post(x, res, post, comb)
    for k in range(4):  # X'_k = post_k f + sum_j C[j,k] X_j
        want = post[0, 0, k] * x[0, 0] + sum(comb[0, 0, j, k] * res[0, 0, j] for j in range(4))
        assert torch.allclose(y[0, 0, k], want, atol=1e-6)


# ---- RoPE -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["flash", "pro"])
def test_yarn_ramp(name, close):
    args = PRESETS[name]
    assert yarn_correction_range(args, args.compress_rope_theta) == (15, 25)
    f = rope_freqs(args, 4).double().numpy()
    i = np.arange(32)
    theta = 160000.0 ** (-2 * i / 64)
    s = 1 - np.clip((i - 15) / (25 - 15), 0, 1)
    close(f, theta * s + theta / 16 * (1 - s), "yarn", f"YaRN frequencies ({name})")
    close(f[:16], theta[:16], "yarn", "YaRN pairs 0-15 unchanged")
    close(f[25:], theta[25:] / 16, "yarn", "YaRN pairs 25-31 divided by 16")
    assert torch.equal(rope_freqs(args, 128), rope_freqs(args, 4))
    close(rope_freqs(args, 0), 10000.0 ** (-2 * i / 64), "yarn", "window-only base 10000, no YaRN")


def test_rope_pairs_are_adjacent_and_inverse_undoes():
    args = PRESETS["tiny"]
    freqs = rope_freqs(args, 0)
    x = torch.zeros(1, 1, 64)
    x[0, 0, 2] = 1.0  # pair 1 = dims (2, 3)
    p = torch.tensor([7])
    y = apply_rotary_emb(x, p, freqs)
    ang = 7 * freqs[1].item()
    assert torch.allclose(y[0, 0, 2:4], torch.tensor([math.cos(ang), math.sin(ang)]), atol=1e-6)
    assert y[0, 0, :2].abs().max() == 0 and y[0, 0, 4:].abs().max() == 0
    z = torch.randn(2, 3, 5, 128)
    pos = torch.tensor([0, 129, 4000])
    r = _rope_tail(_rope_tail(z, pos, freqs, 64), pos, freqs, 64, inverse=True)
    assert torch.allclose(r, z, atol=1e-5) and torch.equal(r[..., :64], z[..., :64])


# ---- Compressor -----------------------------------------------------------------------------------


def _random_compressor(args, m, d, seed):
    comp = Compressor(args, m, d)
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in comp.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * (0.5 if p.dim() == 1 else 1 / math.sqrt(p.size(-1))))
    return comp


@pytest.mark.parametrize(("m", "seqlen"), [(4, 23), (128, 300)])
def test_compressor_equals_explicit_slot_loop(m, seqlen, close):
    """Each entry pools, per channel, over 8 slots (m=4: 4 from the previous block's first-half
    channels + 4 from its own block's second half) or over the 128 slots of its block."""
    args = PRESETS["tiny"]
    d = 128
    comp = _random_compressor(args, m, d, seed=m)
    x = torch.randn(1, seqlen, args.dim, generator=torch.Generator().manual_seed(1))
    freqs = rope_freqs(args, m)
    got = comp(x, 0, comp.init_state(1, x.device), freqs, NOQAT)
    xd = x[0].double()
    a = xd @ comp.wkv.weight.double().T
    g = xd @ comp.wgate.weight.double().T + comp.ape.double()[torch.arange(seqlen) % m]
    want = []
    for j in range(seqlen // m):
        vals, logits = [], []
        if m == 4:
            for i in range(4):  # slots 0-3: previous block, channels [0, d)
                t = 4 * (j - 1) + i
                vals.append(a[t, :d] if j > 0 else torch.zeros(d, dtype=torch.float64))
                logits.append(g[t, :d] if j > 0 else torch.full((d,), -math.inf, dtype=torch.float64))
            for i in range(4):  # slots 4-7: own block, channels [d, 2d)
                vals.append(a[4 * j + i, d:])
                logits.append(g[4 * j + i, d:])
        else:
            for i in range(m):
                vals.append(a[m * j + i])
                logits.append(g[m * j + i])
        w = torch.softmax(torch.stack(logits), dim=0)
        want.append((w * torch.stack(vals)).sum(0))
    pooled = torch.stack(want)[None].float()
    post = _rope_tail(comp.norm(pooled), torch.arange(seqlen // m) * m, freqs, 64)
    assert got.shape == (1, seqlen // m, d)
    close(got, post, "unit_fp32", f"compressor m={m} vs slot loop")


def test_compressor_state_after_prefill_matches_official_layout():
    """m=4 prefill of 10 tokens: slots 0-3 hold block 1 (tokens 4-7), slots 4-5 tokens 8-9 (+ape)."""
    args = PRESETS["tiny"]
    comp = _random_compressor(args, 4, 128, seed=3)
    x = torch.randn(1, 10, args.dim)
    st = comp.init_state(1, x.device)
    comp(x, 0, st, rope_freqs(args, 4), NOQAT)
    kv = x[0] @ comp.wkv.weight.T
    sc = x[0] @ comp.wgate.weight.T + comp.ape[torch.arange(10) % 4]
    assert torch.allclose(st.kv[0, :4], kv[4:8], atol=1e-6)
    assert torch.allclose(st.score[0, :6], sc[4:10], atol=1e-6)
    assert torch.isinf(st.score[0, 6:]).all() and (st.kv[0, 6:] == 0).all()


# ---- Indexer --------------------------------------------------------------------------------------


def test_indexer_scores_and_topk_brute_force(small_model, close):
    attn = small_model.layers[2].attn
    idx = attn.indexer
    assert idx is not None
    g = torch.Generator().manual_seed(5)
    x = torch.randn(1, 61, small_model.args.dim, generator=g)
    qr = torch.randn(1, 61, small_model.args.q_lora_rank, generator=g)
    st = attn.init_state(1, x.device, torch.float32)
    taps = Taps()
    ctx = _Ctx(small_model.opts, taps)
    sel = idx(x, qr, 0, st, rope_freqs(small_model.args, 4), ctx)
    q, k = taps["idx_q"][0].double(), st.idx_kv[0].double()  # [s,h,d], [n,d]
    w = (x[0].double() @ idx.weights_proj.weight.double().T) * (128**-0.5 * 4**-0.5)
    s_len, n = q.size(0), k.size(0)
    brute = torch.zeros(s_len, n, dtype=torch.float64)
    for h in range(idx.n_heads):
        brute += w[:, h : h + 1] * torch.clamp(q[:, h] @ k.T, min=0)
    close(
        idx.scores(taps["idx_q"], (x @ idx.weights_proj.weight.T) * (128**-0.5 * 4**-0.5), st.idx_kv)[0],
        brute,
        "unit_fp32",
        "indexer scores vs per-head loop",
    )
    for p in range(s_len):
        cand = list(range((p + 1) // 4))
        best = sorted(cand, key=lambda j: (-brute[p, j].item(), j))[: idx.index_topk]
        assert sorted(best) == torch.where(sel[0, p])[0].tolist(), f"top-k differs at query {p}"


# ---- MoE ------------------------------------------------------------------------------------------


def test_hash_routing_uses_tid2eid(small_model, tokens):
    args = small_model.args
    taps = Taps(["layers.*.router_idx", "layers.*.router_w", "layers.*.ffn_in"])
    ids = tokens[:, :50]
    small_model(ids, taps=taps)
    for i in range(args.n_layers):
        gate = small_model.layers[i].ffn.gate
        got = taps[f"layers.{i}.router_idx"]
        if i < args.n_hash_layers:
            assert gate.hash and gate.bias is None
            assert torch.equal(got, gate.tid2eid[ids])
        else:  # score routing: top-k of sqrt(softplus(logits)) + bias
            assert not gate.hash and not hasattr(gate, "tid2eid")
            sc = torch.nn.functional.softplus(taps[f"layers.{i}.ffn_in"] @ gate.weight.T).sqrt()
            want = (sc + gate.bias).topk(args.n_activated_experts, dim=-1).indices
            assert torch.equal(got.sort(-1).values, want.sort(-1).values)
        wsum = taps[f"layers.{i}.router_w"].sum(-1)
        assert torch.allclose(wsum, torch.full_like(wsum, args.route_scale), atol=1e-5)


def test_gate_bias_selects_but_does_not_weight(small_model):
    gate = small_model.layers[3].ffn.gate
    x = torch.randn(16, small_model.args.dim)
    scores = torch.nn.functional.softplus(x @ gate.weight.T).sqrt()
    saved = gate.bias.detach().clone()
    with torch.no_grad():
        gate.bias.zero_()
        gate.bias[5] = 1e3  # forces expert 5 into every top-k
        w, idx = gate(x, torch.zeros(16, dtype=torch.long))
        gate.bias.copy_(saved)
    assert (idx == 5).any(-1).all()
    want = scores.gather(-1, idx)
    want = want / want.sum(-1, keepdim=True) * gate.route_scale
    assert torch.allclose(w, want, atol=1e-6)


def test_swiglu_clamp_routed_and_shared(small_model):
    moe = small_model.layers[3].ffn
    assert moe.shared_experts.swiglu_limit == 10.0 and moe.experts[0].swiglu_limit == 10.0
    e = Expert(8, 16, swiglu_limit=10.0)
    with torch.no_grad():
        for p in e.parameters():
            p.copy_(torch.randn(p.shape) * 10)
    x = torch.randn(5, 8)
    gate, up = x @ e.w1.weight.T, x @ e.w3.weight.T
    assert gate.abs().max() > 10 and up.abs().max() > 10
    h = torch.nn.functional.silu(gate.clamp(max=10)) * up.clamp(-10, 10) * 0.5
    want = h @ e.w2.weight.T
    assert torch.allclose(e(x, NOQAT, torch.full((5, 1), 0.5)), want, rtol=1e-5, atol=1e-3)


# ---- attention ------------------------------------------------------------------------------------


def test_sparse_attn_with_sink_brute_force(small_model, close):
    attn = small_model.layers[0].attn
    g = torch.Generator().manual_seed(2)
    q = torch.randn(1, 3, attn.n_heads, attn.head_dim, generator=g)
    keys = torch.randn(1, 7, attn.head_dim, generator=g)
    mask = torch.rand(1, 3, 7, generator=g) > 0.4
    mask[..., 0] = True
    o = attn.sparse_attn(q, keys, mask, torch.float32)
    want = torch.zeros(1, 3, attn.n_heads, attn.head_dim, dtype=torch.float64)
    for s in range(3):
        for h in range(attn.n_heads):
            z = [(q[0, s, h].double() @ keys[0, t].double()) * attn.head_dim**-0.5 for t in range(7) if mask[0, s, t]]
            ks = [keys[0, t].double() for t in range(7) if mask[0, s, t]]
            den = sum(math.exp(v) for v in z) + math.exp(attn.attn_sink[h].item())
            want[0, s, h] = sum(math.exp(v) * k for v, k in zip(z, ks, strict=True)) / den
    close(o, want, "unit_fp32", "attention with sink vs loop")


# ---- quantisation simulation ----------------------------------------------------------------------


def test_fp8_fake_quant_matches_ml_dtypes():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g) * torch.logspace(-3, 3, 64)[:, None]
    x[0, :64] = 0.0  # amax floor 1e-4
    x[1, :64] = 448.0 * torch.linspace(-1, 1, 64)  # amax exactly 448 -> scale 1
    got = fp8_fake_quant(x, 64).numpy()
    xb = x.double().numpy().reshape(64, 4, 64)
    amax = np.maximum(np.abs(xb).max(-1, keepdims=True), 1e-4)
    s = 2.0 ** np.ceil(np.log2(amax / 448.0))
    want = (
        np.clip(xb / s, -448, 448).astype(np.float32).astype(ml_dtypes.float8_e4m3fn).astype(np.float64) * s
    ).reshape(64, 256)
    assert np.array_equal(got, want.astype(np.float32))
    assert np.array_equal(got[1, :64], x[1, :64].numpy().astype(ml_dtypes.float8_e4m3fn).astype(np.float32))


def test_fp4_fake_quant_matches_ml_dtypes():
    grid = torch.tensor([0, 0.25, 0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2, 2.5, 3, 3.5, 4, 5, 6])
    vals = torch.cat([grid, -grid, torch.linspace(-6, 6, 997)])
    want = vals.numpy().astype(ml_dtypes.float4_e2m1fn).astype(np.float32)
    assert np.array_equal(e2m1_round(vals).numpy(), want)  # ties to even, as ml_dtypes
    g = torch.Generator().manual_seed(1)
    x = torch.randn(16, 128, generator=g) * torch.logspace(-2, 2, 16)[:, None]
    got = fp4_fake_quant(x).numpy()
    xb = x.double().numpy().reshape(16, 4, 32)
    amax = np.maximum(np.abs(xb).max(-1, keepdims=True), 6 * 2.0**-126)
    s = 2.0 ** np.ceil(np.log2(amax / 6.0))
    w = np.clip(xb / s, -6, 6).astype(np.float32).astype(ml_dtypes.float4_e2m1fn).astype(np.float64) * s
    assert np.array_equal(got, w.reshape(16, 128).astype(np.float32))


def test_hadamard_is_sylvester_orthonormal():
    n = 128
    H = torch.ones(1, 1, dtype=torch.float64)
    while H.size(0) < n:
        H = torch.cat([torch.cat([H, H], 1), torch.cat([H, -H], 1)], 0)
    x = torch.randn(3, n, dtype=torch.float64)
    assert torch.allclose(hadamard(x), x @ H.T / math.sqrt(n), atol=1e-12)
    assert torch.allclose(hadamard(hadamard(x)), x, atol=1e-12)


def test_qat_simulation_sites(small_model, small_model_noqat, tokens):
    """QAT on: window KV and main compressed entries lie on the e4m3 block-64 grid in dims 0..447 only
    (the rope dims keep full precision); indexer q and entries lie on the e2m1 block-32 grid.  Off: not."""
    names = ["layers.2.kv", "layers.2.comp_kv", "layers.2.idx_kv", "layers.2.idx_q"]
    ids = tokens[:1, :64]

    def on_grid(t, fn):
        return torch.equal(fn(t), t)

    for model, qat in ((small_model, True), (small_model_noqat, False)):
        taps = Taps(names)
        model(ids, taps=taps)
        rd = model.args.rope_head_dim
        for n in ("layers.2.kv", "layers.2.comp_kv"):
            t = taps[n]
            assert on_grid(t[..., :-rd], lambda v: fp8_fake_quant(v, 64)) == qat, n
            assert not on_grid(t[..., -rd:], lambda v: fp8_fake_quant(v, 64)), n
        for n in ("layers.2.idx_kv", "layers.2.idx_q"):
            assert on_grid(taps[n], fp4_fake_quant) == qat, n
