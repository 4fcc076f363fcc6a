"""SOURCE and MXFP4_MOE on the tiny checkpoint: llama.cpp loads and runs them, the `gguf` package and
our reader read them, and `verify` finds every lossless tensor bit-exact (experts also at the byte level)."""

from __future__ import annotations

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

LOSSLESS = ["SOURCE", "MXFP4_MOE"]


@pytest.mark.parametrize("variant", LOSSLESS)
def test_llama_cpp_forward(variant, convert_tiny, llama_logits, llama_load_mtp):
    path = convert_tiny(variant)
    logits = llama_logits(path)
    assert logits.shape[1] == 129280 and logits.shape[0] > 5
    assert np.isfinite(logits).all()
    assert logits.std() > 0  # not a constant output
    desc = llama_load_mtp(path.with_name("mtp-" + path.name))
    assert desc.startswith("deepseek4")


@pytest.mark.parametrize("variant", LOSSLESS)
def test_gguf_package_reads_it(variant, convert_tiny, tiny_args):
    import gguf

    path = convert_tiny(variant)
    r = gguf.GGUFReader(path)
    names = {t.name: t for t in r.tensors}
    arch = r.fields["general.architecture"].contents()
    assert arch == "deepseek4"
    # value types llama.cpp compares exactly
    assert r.fields["deepseek4.block_count"].types == [gguf.GGUFValueType.UINT32]
    assert r.fields["deepseek4.expert_gating_func"].contents() == 4
    assert r.fields["general.file_type"].contents() == 38
    exps = names["blk.2.ffn_gate_exps.weight"]
    assert exps.tensor_type == Q.MXFP4
    assert list(exps.shape) == [tiny_args.dim, tiny_args.moe_inter_dim, tiny_args.n_routed_experts]
    assert names["blk.0.ffn_gate_tid2eid.weight"].tensor_type == Q.I32
    # gguf's own dequantizer agrees with ours on an expert tensor
    from dsv4_gguf import open_gguf

    ours = open_gguf(path).dequantize("blk.2.ffn_gate_exps.weight")
    theirs = gguf.quants.dequantize(exps.data, Q.MXFP4)
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("variant", LOSSLESS)
def test_verify_bit_exact(variant, convert_tiny, tiny_ckpt, tiny_args):
    from dsv4_gguf.quantize.verify import verify

    from dsv4_gguf import open_gguf
    from dsv4_gguf.checkpoint import Checkpoint

    m = open_gguf(convert_tiny(variant))
    assert m.args == tiny_args
    with Checkpoint(tiny_ckpt) as ck:
        reps = verify(m, ck)
    # every checkpoint weight is covered (experts stacked, e/h_proj fused, MTP hc_head in the sidecar)
    gts = m.gtensors()
    assert len(reps) == len(gts)
    covered = {s for t in gts for s in t.sources}
    assert covered == {s.name for s in ck.specs.values() if s.kind != "scale"}
    mx = [r for r in reps if r.qtype == "MXFP4"]
    assert mx and all(r.exact and r.storage_exact for r in mx)
    if variant == "SOURCE":
        bad = [r.name for r in reps if not r.exact]
        assert not bad, f"SOURCE must be bit-exact, differing: {bad}"
    else:
        q8 = [r for r in reps if r.qtype == "Q8_0"]
        assert q8 and all(not r.exact and r.rel_rmse < 0.01 for r in q8)
        assert all(r.exact for r in reps if r.qtype in ("BF16", "F32", "I32", "MXFP4"))


def test_verify_cli(convert_tiny, tiny_ckpt, capsys):
    from dsv4_gguf.cli import main

    assert main(["verify", str(convert_tiny("SOURCE")), "--against", str(tiny_ckpt), "--only", "blk\\.2\\."]) == 0
    out = capsys.readouterr().out
    assert "bit-exact:" in out
    n, total = out.split("bit-exact:")[1].split()[0].split("/")
    assert n == total


def test_reference_model_loads_from_gguf(convert_tiny, tiny_ckpt):
    """The reference model built from SOURCE's checkpoint-named weights equals the one from the checkpoint."""
    torch = pytest.importorskip("torch")
    from dsv4_gguf import open_gguf
    from dsv4_gguf.reference.model import Transformer, load_weights

    m = open_gguf(convert_tiny("SOURCE"))
    a = Transformer(m.args)
    load_weights(a, m.checkpoint_weights())
    b = Transformer.from_checkpoint(tiny_ckpt)
    sa, sb = a.state_dict(), b.state_dict()
    assert sa.keys() == sb.keys()
    for k in sa:
        assert torch.equal(sa[k], sb[k]), k


def test_sidecar_is_optional(convert_tiny, tiny_args):
    from dsv4_gguf import open_gguf

    path = convert_tiny("SOURCE")
    m = open_gguf(path, mtp=False)
    assert m.args.n_mtp_layers == 0 and m.mtp is None
    w = m.checkpoint_weights()
    assert not any(k.startswith("mtp.") for k in w)
    assert w["layers.0.ffn.gate.tid2eid"].dtype == np.int64
