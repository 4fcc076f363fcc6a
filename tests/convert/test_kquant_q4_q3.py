"""Q4_K_M and Q3_K_M on the tiny checkpoint (llama.cpp forward, readers, verify statistics, recipe rules)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("variant", ["Q4_K_M", "Q3_K_M"])
def test_variant(variant, check_variant):
    res = check_variant(variant)
    t = res["types"]
    assert t["output.weight"] == "Q6_K"
    assert t["blk.1.hc_ffn_fn.weight"] == "F32"
    if variant == "Q4_K_M":
        assert t["blk.2.ffn_down_exps.weight"] == "MXFP4"
        assert t["blk.4.ffn_down_shexp.weight"] == "Q6_K" and t["blk.1.ffn_down_shexp.weight"] == "Q4_K"
        assert t["blk.1.attn_q_b.weight"] == "Q8_0"  # row length 128: not a Q4_K block multiple -> fallback
    else:
        assert t["blk.2.ffn_gate_exps.weight"] == "Q3_K"
        assert t["blk.4.ffn_down_exps.weight"] == "Q4_K" and t["blk.1.ffn_down_exps.weight"] == "Q3_K"
