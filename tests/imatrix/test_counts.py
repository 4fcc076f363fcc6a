"""Must-show 1b: the per-expert token counts of a collected imatrix equal the router's choices counted
directly from the PyTorch reference model on the same weights (hash layers and top-k layers), and the
per-expert sums of squares of w1/w3 equal the reference's ffn input summed over the tokens routed to
each expert (so the slices are attributed to the right experts).  Dense inputs are checked the same way.

Runtime in exact mode with QAT off against the reference with QAT off (the parity test's setting); a
choice may differ only at a recorded near-tie (runtime margin < 1e-4), never silently.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from support import small_model  # noqa: E402

from dsv4_gguf.reference import Taps  # noqa: E402


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The small model (tiny preset, 1,024 tokens): seeded ``random_weights`` checkpoint -> converter GGUFs."""
    return small_model.SmallModels(tmp_path_factory.mktemp("im_small"), small_model.small_args(), seed=0)


def test_expert_counts_equal_reference_router(tmp_path, models):
    from dsv4_gguf.quantize.imatrix import load_imatrix_raw
    from dsv4_gguf.quantize.imatrix_collect import collect

    args = models.args
    path = models.gguf("F32")
    rng = np.random.default_rng(5)
    chunks = [rng.integers(0, args.vocab_size, 160).astype(np.int32) for _ in range(2)]
    out = tmp_path / "im.gguf"
    collect(path, None, out, ctx=160, threads=2, token_chunks=chunks, exact=True, qat=False)
    raw = load_imatrix_raw(out)

    ref = small_model.reference_model(args, path, qat=False)
    E = args.n_routed_experts
    counts = np.zeros((args.n_layers, E), np.int64)
    gate_sums = np.zeros((args.n_layers, E, args.dim))
    dense = np.zeros((args.n_layers, args.dim))
    for c in chunks:
        taps = Taps(["layers.*.router_idx", "layers.*.ffn_in"])
        with torch.no_grad():
            ref(torch.from_numpy(c[None].astype(np.int64)), ref.new_state(), taps=taps)
        for L in range(args.n_layers):
            idx = taps[f"layers.{L}.router_idx"].reshape(len(c), -1).numpy().astype(np.int64)
            x = taps[f"layers.{L}.ffn_in"].reshape(len(c), -1).double().numpy()
            counts[L] += np.bincount(idx.reshape(-1), minlength=E)
            for k in range(idx.shape[1]):
                np.add.at(gate_sums[L], idx[:, k], x * x)
            dense[L] += (x * x).sum(0)

    n_tok = sum(len(c) for c in chunks)
    for L in range(args.n_layers):
        for leaf in ("ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"):
            got = raw.counts[f"blk.{L}.{leaf}.weight"]
            assert got.sum() == n_tok * args.n_activated_experts
            np.testing.assert_array_equal(got, counts[L], err_msg=f"layer {L} {leaf}: per-expert token counts")
        for leaf in ("ffn_gate_exps", "ffn_up_exps"):
            np.testing.assert_allclose(
                raw.sums[f"blk.{L}.{leaf}.weight"],
                gate_sums[L],
                rtol=2e-4,
                atol=1e-3,
                err_msg=f"layer {L} {leaf}: per-expert sums of squares",
            )
        for leaf in ("ffn_gate_shexp", "ffn_gate_inp"):
            assert raw.counts[f"blk.{L}.{leaf}.weight"][0] == n_tok
            np.testing.assert_allclose(raw.sums[f"blk.{L}.{leaf}.weight"][0], dense[L], rtol=2e-4, atol=1e-3)
    # down projections see the SwiGLU intermediate, routing weight included: nonzero exactly where routed
    for L in range(args.n_layers):
        s = raw.sums[f"blk.{L}.ffn_down_exps.weight"]
        assert ((s.sum(1) > 0) == (counts[L] > 0)).all()


def test_taps_do_not_change_the_forward_pass(models):
    """The imatrix taps only copy activations: logits with every collection tap on are bit-identical."""
    from dsv4_gguf.quantize.imatrix_collect import TAPS

    from dsv4_gguf import runtime

    args = models.args
    path = models.gguf("Q8_0")
    toks = np.random.default_rng(9).integers(0, args.vocab_size, 150).astype(np.int32)
    model = runtime.load(path, threads=2)
    s = model.session(ctx=256)
    plain = s.prefill(toks, all_logits=True)
    s.reset()
    s.set_taps([*TAPS, "layers.*.block_out"])
    tapped = s.prefill(toks, all_logits=True)
    got = s.take_taps()
    assert {"layers.3.exp_mid", "layers.0.hc_ffn_x", "layers.2.wo_a_in"} <= set(got)
    np.testing.assert_array_equal(plain, tapped)
