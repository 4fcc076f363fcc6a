"""Runtime vs reference on a converter GGUF of the tiny checkpoint whose weights use ggml's 3-bit
i-quants (issue 17): Q8_0 base with ``--tensor-type`` overrides putting the routed experts in IQ3_XXS and
the shared experts and the q projections in IQ3_S.  exact (f32 activations): the rule and bounds of
tests/support/converter_parity.py.  fast (the types' ggml vec_dot against Q8_K activations, the path
that runs the IQ3 dot kernels): top-1 >= 0.85 as there, and a mean KLD <= 0.2 for 3-bit weights (the
0.1 there is set for the 4-8 bit variants; measured on this model and tokens: this file 0.127,
IQ2_XXS-MOE 0.132, Q3_K_M 0.116, Q8_0 with only the routed experts in IQ3_XXS 0.107)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from support import converter_parity as _mod  # noqa: E402
from support import parity  # noqa: E402
from support import report as report_mod  # noqa: E402

tokens = _mod.tokens
_report, _lines = report_mod.reporter_fixture("runtime vs reference on the IQ3 GGUF (measured)")

OVERRIDES = {
    r"attn_q_[ab]\.": "IQ3_S",
    r"_shexp\.": "IQ3_S",
    r"_exps\.": "IQ3_XXS",
}


@pytest.fixture(scope="module")
def iq3_gguf(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("rtiq3") / "tiny-iq3.gguf"
    extra = [a for pat, t in OVERRIDES.items() for a in ("--tensor-type", f"{pat}={t}")]
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "Q8_0", "--no-mtp", *extra]) == 0
    return out


def test_file_holds_both_iq3_types(iq3_gguf):
    from gguf import GGUFReader

    types = {t.name: t.tensor_type.name for t in GGUFReader(iq3_gguf).tensors}
    assert types["blk.0.ffn_gate_exps.weight"] == "IQ3_XXS", types
    assert types["blk.0.ffn_down_shexp.weight"] == "IQ3_S", types
    assert {"IQ3_XXS", "IQ3_S"} <= set(types.values())


@pytest.mark.slow
def test_iq3_types_parity(tiny_args, iq3_gguf, tokens):
    from dsv4_gguf import runtime

    ref_logits, ref_taps = _mod._ref_run(tiny_args, iq3_gguf, tokens)
    for mode in ("exact", "fast"):
        model = runtime.load(iq3_gguf, threads=2, exact=mode == "exact")
        s = model.session(ctx=_mod.N_TOKENS + 8)
        s.set_taps(parity.SELECTION_TAPS + parity.MARGIN_TAPS)
        got = s.prefill(tokens, all_logits=True)
        assert np.isfinite(got).all()
        c = parity.compare(ref_logits, got, ref_taps, s.take_taps())
        _lines.append(c.line(f"iq3          {mode:5s}"))
        if mode == "exact":
            parity.check(c, "iq3 exact", min_top1=0.97, max_mean_kld=1e-3)
        else:
            # 3-bit weights: the 4-8 bit variants' 0.1 does not apply; the 3-bit class measures on these tokens
            # Q3_K_M 0.116, IQ2_XXS-MOE 0.132, this file 0.127 (a wrong kernel gives KLD > 1)
            parity.check(c, "iq3 fast", min_top1=0.85, max_mean_kld=0.2, strict=False)
