"""Q8_0, Q6_K, Q5_K_M on the tiny checkpoint: llama.cpp runs them, `gguf` and our reader read them,
verify's error statistics are within budget, and the recipes' protections hold."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("variant", ["Q8_0", "Q6_K", "Q5_K_M"])
def test_variant(variant, check_variant):
    res = check_variant(variant)
    t = res["types"]
    assert t["blk.1.hc_attn_fn.weight"] == "F32"  # mHC kept exact
    assert t["blk.1.ffn_gate_inp.weight"] == "BF16"  # router kept as stored
    assert t["blk.2.indexer.attn_q_b.weight"] == "Q8_0"  # indexer protected
    assert t["blk.2.ffn_gate_exps.weight"] == "MXFP4"  # FP4 experts stay lossless at >= 4-bit variants
    default = {"Q8_0": "Q8_0", "Q6_K": "Q6_K", "Q5_K_M": "Q5_K"}[variant]
    assert t["blk.1.attn_output_b.weight"] == default
    if variant == "Q5_K_M":
        assert t["output.weight"] == "Q6_K"
        assert t["blk.2.attn_kv.weight"] == "Q6_K" and t["blk.1.attn_kv.weight"] == "Q5_K"  # use_more_bits(2|1, 5)
