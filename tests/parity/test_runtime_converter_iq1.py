"""Runtime vs reference on a converter GGUF of the tiny checkpoint whose weights use ggml's IQ1_S and
IQ1_M (issue 17): Q8_0 base with ``--tensor-type`` overrides putting the routed experts in IQ1_S (which
needs an imatrix: the converter's weight-energy fallback) and the shared experts and the q projections
in IQ1_M.  Same rule and bounds as tests/support/converter_parity.py (exact: f32 activations; fast: the
types' ggml vec_dot against Q8_K activations)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from support import converter_parity as _mod  # noqa: E402
from support import parity  # noqa: E402
from support import report as report_mod  # noqa: E402

tokens = _mod.tokens
_report, _lines = report_mod.reporter_fixture("runtime vs reference on the IQ1_S/IQ1_M GGUF (measured)")

OVERRIDES = {
    r"attn_q_[ab]\.": "IQ1_M",
    r"_shexp\.": "IQ1_M",
    r"_exps\.": "IQ1_S",
}


@pytest.fixture(scope="module")
def iq1_gguf(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("rtiq1") / "tiny-iq1.gguf"
    extra = [a for pat, t in OVERRIDES.items() for a in ("--tensor-type", f"{pat}={t}")]
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "Q8_0", "--no-mtp", *extra]) == 0
    return out


def test_file_holds_both_iq1_types(iq1_gguf):
    from gguf import GGUFReader

    types = {t.name: t.tensor_type.name for t in GGUFReader(iq1_gguf).tensors}
    assert types["blk.0.ffn_gate_exps.weight"] == "IQ1_S", types
    assert types["blk.0.ffn_down_shexp.weight"] == "IQ1_M", types
    assert {"IQ1_S", "IQ1_M"} <= set(types.values())


@pytest.mark.slow
def test_iq1_types_parity(tiny_args, iq1_gguf, tokens):
    from dsv4_gguf import runtime

    ref_logits, ref_taps = _mod._ref_run(tiny_args, iq1_gguf, tokens)
    for mode in ("exact", "fast"):
        model = runtime.load(iq1_gguf, threads=2, exact=mode == "exact")
        s = model.session(ctx=_mod.N_TOKENS + 8)
        s.set_taps(parity.SELECTION_TAPS + parity.MARGIN_TAPS)
        got = s.prefill(tokens, all_logits=True)
        assert np.isfinite(got).all()
        c = parity.compare(ref_logits, got, ref_taps, s.take_taps())
        _lines.append(c.line(f"iq1_s/iq1_m  {mode:5s}"))
        if mode == "exact":
            parity.check(c, "iq1_s/iq1_m exact", min_top1=0.97, max_mean_kld=1e-3)
        else:
            parity.check(c, "iq1_s/iq1_m fast", min_top1=0.85, max_mean_kld=0.1, strict=False)
