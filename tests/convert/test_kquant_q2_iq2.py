"""Q2_K and IQ2_XXS-MOE on the tiny checkpoint (llama.cpp forward, readers, verify statistics, recipe rules)."""

from __future__ import annotations

import pytest


@pytest.mark.parametrize("variant", ["Q2_K", "IQ2_XXS-MOE"])
def test_variant(variant, check_variant):
    res = check_variant(variant)
    t = res["types"]
    if variant == "Q2_K":
        assert t["blk.2.ffn_up_exps.weight"] == "Q2_K" and t["blk.2.ffn_down_exps.weight"] == "Q3_K"
        assert t["blk.2.ffn_gate_shexp.weight"] == "Q4_K" and t["output.weight"] == "Q6_K"
    else:
        assert t["blk.2.ffn_gate_exps.weight"] == "IQ2_XXS" and t["blk.2.ffn_down_exps.weight"] == "Q2_K"
        for n in ("blk.2.attn_q_a.weight", "blk.2.ffn_up_shexp.weight", "output.weight", "token_embd.weight"):
            assert t[n] == "Q8_0", n
