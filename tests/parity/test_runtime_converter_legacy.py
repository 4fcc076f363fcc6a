"""Runtime vs reference on a converter GGUF of the tiny checkpoint whose weights use ggml's legacy
32-element types (issue 17, first increment): Q8_0 base with ``--tensor-type`` overrides putting the
attention projections in Q4_1 / Q5_0, the shared experts in Q5_1 and the routed experts in IQ4_NL.
Same rule and bounds as tests/support/converter_parity.py (exact: f32 activations; fast: the types'
ggml vec_dot against Q8_1 / Q8_0 activations)."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("torch")

from support import converter_parity as _mod  # noqa: E402
from support import parity  # noqa: E402
from support import report as report_mod  # noqa: E402

tokens = _mod.tokens
_report, _lines = report_mod.reporter_fixture("runtime vs reference on the legacy-type GGUF (measured)")

OVERRIDES = {
    r"attn_q_[ab]\.": "Q4_1",
    r"attn_kv\.|attn_output_[ab]\.": "Q5_0",
    r"_shexp\.": "Q5_1",
    r"_exps\.": "IQ4_NL",
}


@pytest.fixture(scope="module")
def legacy_gguf(tiny_ckpt, tmp_path_factory):
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("rtlegacy") / "tiny-legacy.gguf"
    extra = [a for pat, t in OVERRIDES.items() for a in ("--tensor-type", f"{pat}={t}")]
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "Q8_0", "--no-mtp", *extra]) == 0
    return out


def test_file_holds_every_legacy_type(legacy_gguf):
    from gguf import GGUFReader

    types = {t.tensor_type.name for t in GGUFReader(legacy_gguf).tensors}
    assert {"Q4_1", "Q5_0", "Q5_1", "IQ4_NL"} <= types, types


@pytest.mark.slow
def test_legacy_types_parity(tiny_args, legacy_gguf, tokens):
    from dsv4_gguf import runtime

    ref_logits, ref_taps = _mod._ref_run(tiny_args, legacy_gguf, tokens)
    for mode in ("exact", "fast"):
        model = runtime.load(legacy_gguf, threads=2, exact=mode == "exact")
        s = model.session(ctx=_mod.N_TOKENS + 8)
        s.set_taps(parity.SELECTION_TAPS + parity.MARGIN_TAPS)
        got = s.prefill(tokens, all_logits=True)
        assert np.isfinite(got).all()
        c = parity.compare(ref_logits, got, ref_taps, s.take_taps())
        _lines.append(c.line(f"legacy       {mode:5s}"))
        if mode == "exact":
            parity.check(c, "legacy exact", min_top1=0.97, max_mean_kld=1e-3)
        else:
            parity.check(c, "legacy fast", min_top1=0.85, max_mean_kld=0.1, strict=False)
