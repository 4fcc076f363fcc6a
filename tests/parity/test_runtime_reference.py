"""C++ runtime vs the PyTorch reference on the same dequantized GGUF weights (issue 7, must-show 1): the
converter's GGUFs of the small model (seed-0 ``random_weights`` written in the release format,
tests/support/small_model.py), the reference on ``open_gguf(...).checkpoint_weights()``.

* Taps, simulation off, exact math: every per-layer intermediate within the ``runtime_exact`` entry;
  router and indexer choices equal except recorded near-ties.
* 600 tokens per type recipe, default (fast, QAT on) runtime: top-1 equal at every position except where
  a recorded near-tie explains it; mean KLD reported and bounded.  Near-tie rule (never a wider bound):
  a position may differ only if (a) the reference's top-1/top-2 logit gap is < EPS_LOGIT, or (b) at this
  or an earlier position some router or indexer choice differs between the two AND the runtime's own
  selection margin there was < EPS_ROUTE.  The first differing choice of the run must be such a
  near-tie (later ones follow from the different KV it produces); a first flip with a wide margin is
  a bug and fails the test.  After it, top-1 is bounded through the agreement rate and mean KLD.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support import report, small_model  # noqa: E402

from dsv4_gguf.reference import Taps  # noqa: E402
from dsv4_gguf.reference.tolerances import Tol, assert_close  # noqa: E402

_report, LINES = report.reporter_fixture("runtime vs reference (measured)")

RUNTIME_EXACT = Tol(
    2e-4,
    2e-5,
    "runtime (AVX2 f32 dots, exact mode) vs reference (MKL sgemm), QAT off: only "
    "fp32 reduction order differs (~1e-7 relative per op) through 5 blocks of mHC; measured <= 4e-5",
)
EPS_LOGIT = 0.05  # top-1/top-2 logit gap under which argmax may legitimately flip (logits are O(1-5))
EPS_ROUTE = 0.1  # selection margin (k-th minus (k+1)-th score) of the first differing router/indexer choice;
#                  scores are O(1); QAT rounding flips (one e4m3/e2m1 grid step) move them by ~1e-2
MAX_MEAN_KLD = {"F32": 1e-3, "BF16": 1e-3, "Q8_0": 5e-3, "MXFP4_MOE": 5e-3, "Q4_K_M": 5e-3}


VARIANTS = ("F32", "BF16", "Q8_0", "MXFP4_MOE", "Q4_K_M")  # converter recipes (quantize/recipes)


@pytest.fixture(scope="module")
def args():
    return small_model.small_args()


@pytest.fixture(scope="module")
def tokens(args):
    return np.random.default_rng(1234).integers(0, args.vocab_size, 600).astype(np.int32)


@pytest.fixture(scope="module")
def gguf_path(tmp_path_factory, args):
    """variant -> the converter's GGUF of the small model (seed-0 ``random_weights``), made on first use."""
    return small_model.SmallModels(tmp_path_factory.mktemp("rtref"), args, seed=0).gguf


def _softmax(x):
    z = x - x.max(-1, keepdims=True)
    p = np.exp(z)
    return p / p.sum(-1, keepdims=True)


TAPS = ["embed", "hc_head_out", "logits"] + [
    f"layers.*.{n}"
    for n in (
        "attn_in",
        "q",
        "kv",
        "comp_kv",
        "idx_kv",
        "attn_out",
        "ffn_in",
        "moe_out",
        "block_out",
        "hc_attn_pre",
        "hc_attn_comb",
        "router_idx",
        "router_w",
        "idx_topk",
    )
]


@pytest.mark.parametrize("variant", ["F32", "Q8_0"])
def test_taps_exact_no_qat(variant, args, tokens, gguf_path):
    from dsv4_gguf import runtime

    path = gguf_path(variant)
    ref = small_model.reference_model(args, path, qat=False)
    n = 300
    model = runtime.load(path, threads=2, exact=True, qat=False)
    s = model.session(ctx=1024)
    s.set_taps(TAPS + ["layers.*.router_margin", "layers.*.idx_margin"])
    s.prefill(tokens[:n], all_logits=True)
    got = s.take_taps()
    taps = Taps()
    ref(torch.from_numpy(tokens[None, :n].astype(np.int64)), ref.new_state(), all_logits=True, taps=taps)
    worst = 0.0
    for name, g in got.items():
        if name.endswith("_margin"):
            continue
        r = taps[name].double().numpy().reshape(g.shape[0], -1)
        if name.endswith(("router_idx", "idx_topk")):
            diff = np.flatnonzero((r != g).any(-1))
            margin = got[name.replace("router_idx", "router_margin").replace("idx_topk", "idx_margin")][:, 0]
            assert all(margin[i] < 1e-4 for i in diff), f"{name}: choices differ at {diff[:5]} with wide margins"
            continue
        if name.endswith("router_w"):
            continue  # compared through moe_out; depends on the (equal) choices above
        err = assert_close(g, r, RUNTIME_EXACT, f"{variant} tap {name}")
        worst = max(worst, err)
    LINES.append(f"{variant:10s} exact, QAT off, {n} tokens: max |rt-ref| over {len(got)} taps = {worst:.2e}")


def _discrete_diffs(got, taps):
    """Every differing router/indexer choice as (position, tap, runtime margin), in position order."""
    events = []
    for name, g in got.items():
        if not name.endswith(("router_idx", "idx_topk")):
            continue
        r = taps[name].numpy().reshape(g.shape[0], -1)
        margin = got[name.replace("router_idx", "router_margin").replace("idx_topk", "idx_margin")][:, 0]
        events += [(int(p), name, float(margin[p])) for p in np.flatnonzero((r != g).any(-1))]
    return sorted(events)


# exact: the runtime multiplies the same dequantized weights with f32 activations (the reference's math);
# fast: quantized weights meet activations quantized to Q8_0/Q8_K per 32/256 block (ggml's vec_dot, the
# deliberate speed/precision trade of llama.cpp too), ~0.3% relative error per product, so its top-1 and
# KLD bounds are looser and stated separately.
MODES = {
    "exact": dict(min_top1=0.97, kld=MAX_MEAN_KLD),
    "fast": dict(min_top1=0.85, kld=dict.fromkeys(MAX_MEAN_KLD, 2e-2)),
}
# F32/BF16 weights meet f32 activations in both modes: their fast run would repeat the exact one
RUNS = [(v, m) for m in MODES for v in VARIANTS if not (m == "fast" and v in ("F32", "BF16"))]


@pytest.mark.parametrize(("variant", "mode"), RUNS)
def test_600_tokens_top1_and_kld(variant, mode, args, tokens, gguf_path):
    from dsv4_gguf import runtime

    path = gguf_path(variant)
    ref = small_model.reference_model(args, path, qat=True)
    model = runtime.load(path, threads=2, exact=mode == "exact")
    s = model.session(ctx=1024)
    s.set_taps(["layers.*.router_idx", "layers.*.idx_topk", "layers.*.router_margin", "layers.*.idx_margin"])
    got_logits = s.prefill(tokens, all_logits=True)
    got = s.take_taps()
    taps = Taps(["layers.*.router_idx", "layers.*.idx_topk"])
    ref_logits = (
        ref(torch.from_numpy(tokens[None].astype(np.int64)), ref.new_state(), all_logits=True, taps=taps)[0]
        .double()
        .numpy()
    )
    T = len(tokens)
    pr, pg = _softmax(ref_logits), _softmax(got_logits.astype(np.float64))
    kld = (pr * (np.log(pr + 1e-300) - np.log(pg + 1e-300))).sum(-1)
    a_ref, a_got = ref_logits.argmax(-1), got_logits.argmax(-1)
    srt = np.sort(ref_logits, -1)
    gap = srt[:, -1] - srt[:, -2]
    events = _discrete_diffs(got, taps)
    # the first divergence must be a recorded near-tie; later flips follow from it (different KV)
    if events:
        p0, name, m = events[0]
        assert m < EPS_ROUTE, f"{variant}: first differing choice {name} at token {p0}: wide margin {m:.3g} (a bug)"
    first_tie = events[0][0] if events else T
    unexplained = [int(p) for p in np.flatnonzero(a_ref != a_got) if gap[p] >= EPS_LOGIT and p < first_tie]
    top1 = float(np.mean(a_ref == a_got))
    LINES.append(
        f"{variant:10s} 600 tok {mode}+QAT: top-1 agree {top1:.4f}, mean KLD {kld.mean():.2e}"
        f", max KLD {kld.max():.2e}, near-tie choice flips {len(events)} (first at {first_tie}), "
        f"logit near-ties {int(((a_ref != a_got) & (gap < EPS_LOGIT)).sum())}"
    )
    assert not unexplained, (
        f"{variant}: top-1 differs at positions {unexplained[:10]} with logit gap >= "
        f"{EPS_LOGIT} and no earlier near-tie router/indexer flip"
    )
    assert kld.mean() <= MODES[mode]["kld"][variant], f"{variant}: mean KLD {kld.mean():.3g}"
    assert top1 >= MODES[mode]["min_top1"], f"{variant}: top-1 agreement {top1:.3f}"


def test_prefill_equals_decode_equals_chunks(args, tokens, gguf_path):
    """Every (row, token) product is computed identically for any chunking: bit-equal logits."""
    from dsv4_gguf import runtime

    model = runtime.load(gguf_path("MXFP4_MOE"), threads=2)
    T = 300
    full = model.session(ctx=1024).prefill(tokens[:T], all_logits=True)
    s = model.session(ctx=1024)
    dec = np.stack([s.decode(int(t)) for t in tokens[:T]])
    s2 = model.session(ctx=1024)
    parts, start = [], 0
    for n in (1, 3, 4, 120, 9, 127, 36):  # crosses m=4 and m=128 block edges and the 128-window
        parts.append(s2.prefill(tokens[start : start + n], all_logits=True))
        start += n
    chunks = np.concatenate(parts)
    assert np.array_equal(full, dec), f"prefill vs decode: max diff {np.abs(full - dec).max():.3g}"
    assert np.array_equal(full, chunks), f"prefill vs chunks: max diff {np.abs(full - chunks).max():.3g}"
