"""The recipes of the published low-bit class (issue 17 item 2: IQ1_S-MOE, IQ2_XXS-DS4, IQ3_XXS-MOE, Q3_K-MOE)
on the tiny checkpoint: llama.cpp loads and runs each file, the `gguf` reader and ours agree on every type,
`verify` holds every lossy tensor to its type's error budget (REL_RMSE_BUDGET) and the lossless ones exact,
and the types are the ones each recipe's rules give."""

from __future__ import annotations

import pytest

DENSE_Q8 = ("blk.2.attn_q_a.weight", "blk.2.attn_output_b.weight", "blk.2.ffn_up_shexp.weight", "output.weight")
EXPERTS = {  # variant -> (gate/up type, down type)
    "IQ1_S-MOE": ("IQ1_S", "IQ2_XXS"),
    "IQ2_XXS-DS4": ("IQ2_XXS", "Q2_K"),
    "IQ3_XXS-MOE": ("IQ3_XXS", "IQ3_S"),
    "Q3_K-MOE": ("Q3_K", "Q4_K"),
}


@pytest.mark.parametrize("variant", list(EXPERTS))
def test_variant(variant, check_variant):
    res = check_variant(variant)
    t = res["types"]
    gate_up, down = EXPERTS[variant]
    for b in range(5):
        assert t[f"blk.{b}.ffn_gate_exps.weight"] == t[f"blk.{b}.ffn_up_exps.weight"] == gate_up, b
        assert t[f"blk.{b}.ffn_down_exps.weight"] == down, b
    for n in DENSE_Q8:
        assert t[n] == "Q8_0", n
    assert {gate_up, down} <= set(res["stats"]), res["stats"]  # verify measured both expert types
    if variant == "IQ2_XXS-DS4":  # ds4's Q2: F16 router, embedding, indexer, compressor, mHC; F32 norms
        for n in (
            "blk.2.ffn_gate_inp.weight",
            "token_embd.weight",
            "blk.2.indexer.attn_q_b.weight",
            "blk.2.attn_compressor_kv.weight",
            "blk.2.attn_compressor_ape.weight",
            "blk.2.hc_attn_fn.weight",
            "output_hc_fn.weight",
        ):
            assert t[n] == "F16", n
        assert t["blk.2.attn_norm.weight"] == t["output_norm.weight"] == "F32"
    else:  # the rest keep the router, mHC and compressor biases as stored, compressor/indexer at Q8_0
        assert t["blk.2.ffn_gate_inp.weight"] == "BF16" and t["blk.2.hc_attn_fn.weight"] == "F32"
        assert t["blk.2.attn_compressor_kv.weight"] == t["blk.2.indexer.attn_q_b.weight"] == "Q8_0"
        assert t["token_embd.weight"] == "Q8_0"


@pytest.mark.parametrize("variant", list(EXPERTS))
def test_recipe_file_passes_the_recipe_checks(variant):
    """Each new recipe is also a valid ``--recipe FILE`` (the field-by-field checks) and every rule has a reason."""
    from pathlib import Path

    from dsv4_gguf.quantize.recipes import load_recipe, load_recipe_file

    path = Path(__file__).resolve().parents[2] / "quantize" / "recipes" / f"{variant.lower().replace('-', '_')}.json"
    assert load_recipe_file(path) == load_recipe(variant)
    assert all(len(r.reason) > 40 for r in load_recipe(variant).rules)
