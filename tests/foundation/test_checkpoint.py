"""Synthetic tiny checkpoint: release layout, multi-shard, and bit-exact decode of every FP8/FP4 tensor."""

from __future__ import annotations

import hashlib
import json

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open

from dsv4_gguf.checkpoint import Checkpoint
from dsv4_gguf.layout import census, checkpoint_tensors
from dsv4_gguf.synth import quantize_fp4_groups, quantize_fp8_blocks, write_synthetic


def test_tiny_checkpoint_files_and_layout(tiny_ckpt, tiny_args):
    names = {p.name for p in tiny_ckpt.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "model.safetensors.index.json",
        "inference",
    } <= names
    shards = sorted(n for n in names if n.endswith(".safetensors"))
    assert len(shards) >= 2 and shards[0] == f"model-00001-of-{len(shards):05d}.safetensors"
    index = json.loads((tiny_ckpt / "model.safetensors.index.json").read_text())
    assert index["metadata"]["total_size"] == census(tiny_args).nbytes
    with Checkpoint(tiny_ckpt) as ck:  # validates every header and the layout
        assert ck.args == tiny_args
        assert set(ck.names()) == {t.name for t in checkpoint_tensors(tiny_args)}
        assert ck.view("layers.2.attn.wq_a.weight").dtype == ml_dtypes.float8_e4m3fn
        assert ck.view("layers.2.attn.wq_a.scale").dtype == ml_dtypes.float8_e8m0fnu
        assert ck.view("layers.2.ffn.experts.0.w1.weight").dtype == np.int8
        assert ck.view("layers.0.ffn.gate.tid2eid").dtype == np.int64
        assert not ck.view("embed.weight").flags.writeable  # zero-copy view of the read-only map


def test_tokenizer_is_the_real_dsv4_vocabulary(tiny_ckpt):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(tiny_ckpt / "tokenizer.json"))
    assert tok.get_vocab_size() == 129280
    assert tok.token_to_id("<｜begin▁of▁sentence｜>") == 0 and tok.token_to_id("<｜end▁of▁sentence｜>") == 1


def test_every_quantized_tensor_decodes_bit_exact(tiny_ckpt, npdecode):
    """Checkpoint.dequantize (native kernels) == independent numpy decode, for every FP8/FP4 weight."""
    checked = {"fp8": 0, "fp4": 0, "plain": 0}
    with Checkpoint(tiny_ckpt) as ck:
        for spec in ck.weights():
            got = ck.dequantize(spec.name)
            raw = ck.view(spec.name)
            if spec.kind == "fp8":
                want = npdecode.fp8_block(raw, ck.view(spec.name[:-7] + ".scale"))
            elif spec.kind == "fp4":
                want = npdecode.fp4_group(raw, ck.view(spec.name[:-7] + ".scale"))
            elif raw.dtype == np.int64:
                assert np.array_equal(got, raw)
                checked["plain"] += 1
                continue
            else:
                want = raw.astype(np.float32)
            assert got.shape == spec.logical_shape, spec.name
            assert npdecode.same_bits(got, want), spec.name
            assert np.isfinite(got).all(), spec.name
            checked[spec.kind] += 1
    assert checked["fp8"] == 52 and checked["fp4"] == 144


def test_safetensors_package_reads_our_shards(tiny_ckpt):
    torch = pytest.importorskip("torch")
    with Checkpoint(tiny_ckpt) as ck:
        shard = ck.shard_names()[-1]
        with safe_open(str(tiny_ckpt / shard), framework="pt") as f:
            for name in list(f.keys())[:40]:
                t = f.get_tensor(name)
                ours = ck.view(name)
                assert tuple(t.shape) == ours.shape
                assert t.contiguous().view(torch.uint8).numpy().tobytes() == ours.tobytes()


def test_synthetic_weights_are_realistic(tiny_ckpt, tiny_args):
    with Checkpoint(tiny_ckpt) as ck:
        w = ck.dequantize("layers.3.attn.wq_a.weight")
        col = np.abs(w).mean(axis=0)
        assert col.max() > 3 * np.median(col)  # outlier input channels
        kurt = ((w - w.mean()) ** 4).mean() / w.var() ** 2
        assert kurt > 4.0  # heavier tails than a Gaussian (3)
        gate = ck.dequantize("layers.3.ffn.gate.weight")
        assert np.linalg.norm(gate, axis=1).std() > 0.1  # experts are not interchangeable
        tid = ck.dequantize("layers.0.ffn.gate.tid2eid")
        assert tid.min() >= 0 and tid.max() < tiny_args.n_routed_experts
        assert (tid[:, 0] != tid[:, 1]).all()
        # FP8 scales are chosen, not random: every block's max |value| uses the e4m3 range
        raw = ck.view("layers.3.attn.wq_a.weight").view(np.uint8).view(ml_dtypes.float8_e4m3fn)
        assert np.abs(raw.astype(np.float32)).max() > 224


def test_synthesis_is_deterministic_and_independent_of_sharding(tmp_path, micro_args, micro_ckpt):
    other = write_synthetic(micro_args, tmp_path / "again", seed=1, max_shard_bytes=3 << 20)
    with Checkpoint(micro_ckpt) as a, Checkpoint(other) as b:
        assert len(a.shard_names()) != len(b.shard_names())
        for name in a.names():
            assert a.view(name).tobytes() == b.view(name).tobytes(), name
    third = write_synthetic(micro_args, tmp_path / "seed2", seed=2)
    with Checkpoint(third) as c, Checkpoint(micro_ckpt) as a:
        h = lambda ck: hashlib.sha256(ck.view("layers.1.attn.wkv.weight").tobytes()).hexdigest()  # noqa: E731
        assert h(c) != h(a)


def test_quantizers_round_trip_within_format_precision(npdecode):
    rng = np.random.default_rng(0)
    w = rng.standard_normal((256, 384)).astype(np.float32)
    q, s = quantize_fp8_blocks(w)
    back = npdecode.fp8_block(q, s)
    assert np.abs(back - w).max() <= np.abs(w).max() * 2**-4  # e4m3: 3 mantissa bits
    q4, s4 = quantize_fp4_groups(w)
    back4 = npdecode.fp4_group(q4, s4)
    rel = np.abs(back4 - w).reshape(256, -1, 32).max(axis=2) / np.abs(w).reshape(256, -1, 32).max(axis=2)
    assert rel.max() <= 0.34  # half of the widest e2m1 step (4 -> 6) relative to the group scale
    zero_q, zero_s = quantize_fp8_blocks(np.zeros((128, 128), np.float32))
    assert (npdecode.fp8_block(zero_q, zero_s) == 0).all()
