"""The benchmarks' pooled-row GGUF writer (benchmarks/synth_gguf.py `write_pooled`, used by cuda_bench.py for
full-width GGUFs) on the tiny preset: its file is the converter's plan byte for byte in the header (metadata,
tokenizer, tensor infos, offsets) with every tensor in the planned type and shape, the runtime loads it and
decodes finite logits, and an interrupted write resumes to the same bytes.  Benchmarks may be imported by
tests, never the other way round: the module is loaded from its file."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from dsv4_gguf.config import PRESETS

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def synth_gguf():
    spec = importlib.util.spec_from_file_location("bench_synth_gguf", ROOT / "benchmarks" / "synth_gguf.py")
    mod = importlib.util.module_from_spec(spec)
    assert spec.loader is not None
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="module")
def pooled(synth_gguf, tmp_path_factory):
    path = tmp_path_factory.mktemp("pooled") / "tiny-MXFP4_MOE.gguf"
    return synth_gguf.write_pooled(path, PRESETS["tiny"], "MXFP4_MOE", name="tiny")


def test_file_is_the_converters_plan(synth_gguf, pooled):
    from dsv4_gguf.gguf_model import open_gguf

    plan = synth_gguf.pooled_plan(PRESETS["tiny"], "MXFP4_MOE", pooled, name="tiny")
    (f,) = plan.files
    assert pooled.stat().st_size == f.size
    assert pooled.read_bytes()[: len(f.header)] == f.header  # keys, tokenizer, tensor infos and offsets
    with open_gguf(pooled, mtp=False) as m:
        assert m.names() == [p.tensor.name for p in f.entries]
        for p in f.entries:
            r = m.info(p.tensor.name)
            assert (r.qtype, r.shape, r.nbytes) == (p.qtype, p.tensor.shape, p.nbytes), p.tensor.name
        assert {m.info(n).qtype.name for n in m.names()} == {"BF16", "F32", "I32", "MXFP4", "Q8_0"}
        # the F32/I32 rules: norms 1, sinks 0, hash routing ids inside the expert range
        assert np.all(m.raw("blk.0.attn_norm.weight").view(np.float32) == 1.0)
        assert np.all(m.raw("blk.0.attn_sinks.weight").view(np.float32) == 0.0)
        ids = m.raw("blk.0.ffn_gate_tid2eid.weight").view(np.int32)
        assert ids.min() >= 0 and ids.max() < PRESETS["tiny"].n_routed_experts
        # quantized matrices: rows of the pool, O(1)-scaled and finite
        w = m.dequantize("blk.1.attn_q_a.weight")
        assert np.isfinite(w).all() and 0.5 < float(np.sqrt(w.shape[-1]) * w.std()) < 2.0


def test_runtime_loads_and_decodes(pooled):
    from dsv4_gguf import runtime

    m = runtime.load(pooled, threads=2)
    s = m.session(ctx=32)
    logits = s.prefill([1, 2, 3, 4])
    for _ in range(3):
        assert logits.shape == (m.vocab_size,) and np.isfinite(logits).all()
        logits = s.decode(int(logits.argmax()))
    assert np.isfinite(logits).all() and float(logits.std()) > 0


def test_interrupted_write_resumes_to_the_same_bytes(synth_gguf, pooled, tmp_path, monkeypatch):
    from dsv4_gguf.quantize import convert as conv

    path = tmp_path / "tiny-MXFP4_MOE.gguf"
    real = conv.convert

    def stop_after_ten(*a, **kw):
        n = [0]

        def on_tensor(name: str) -> None:
            n[0] += 1
            if n[0] == 10:
                raise KeyboardInterrupt

        return real(*a, on_tensor=on_tensor, **kw)

    monkeypatch.setattr(synth_gguf, "convert", stop_after_ten)
    with pytest.raises(KeyboardInterrupt):
        synth_gguf.write_pooled(path, PRESETS["tiny"], "MXFP4_MOE", name="tiny")
    assert not path.exists() and Path(str(path) + conv.PARTIAL).exists()
    monkeypatch.setattr(synth_gguf, "convert", real)
    synth_gguf.write_pooled(path, PRESETS["tiny"], "MXFP4_MOE", name="tiny")
    assert path.read_bytes() == pooled.read_bytes()
