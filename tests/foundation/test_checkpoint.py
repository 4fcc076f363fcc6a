"""Synthetic tiny checkpoint: release layout, multi-shard, bit-exact decode of every FP8/FP4 tensor, and given
values (``write_synthetic(values=...)``) read back as their release-format rounding."""

from __future__ import annotations

import hashlib
import json
import os

import ml_dtypes
import numpy as np
import pytest
from safetensors import safe_open

from dsv4_gguf.checkpoint import Checkpoint
from dsv4_gguf.layout import census, checkpoint_tensors
from dsv4_gguf.synth import SynthError, plan_shards, quantize_fp4_groups, quantize_fp8_blocks, write_synthetic


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


class _Stop(Exception):
    pass


def test_stopped_synthesis_resumes_keeping_finished_shards(tmp_path, micro_args, micro_ckpt):
    """A run stopped after a few shards leaves them in ``<out>.partial``; the same call again keeps them (same
    inode: not rewritten), writes the rest, and the result equals an uninterrupted run byte for byte, including a
    scale whose weight lies in a kept shard.  Other arguments start over."""
    specs = list(checkpoint_tensors(micro_args))
    for shard_bytes in range(256 << 10, 2 << 20, 64 << 10):  # a split that puts some scale after its weight's shard
        shards = plan_shards(specs, shard_bytes)
        where = {s.name: i for i, group in enumerate(shards) for s in group}
        cut = min(
            (where[n] for n in where if n.endswith(".scale") and where[n] != where[n[:-6] + ".weight"]), default=0
        )
        if cut:
            break
    assert cut, "no shard size splits a weight from its scale; this test could not check the re-encode"
    limit = sum(s.nbytes for group in shards[:cut] for s in group)  # stop in the first tensor of shard `cut`
    out, written = tmp_path / "micro", 0

    def stop_after(nbytes: int) -> None:
        nonlocal written
        written += nbytes
        if written > limit:
            raise _Stop

    with pytest.raises(_Stop):
        write_synthetic(micro_args, out, seed=1, max_shard_bytes=shard_bytes, progress=stop_after)
    part = tmp_path / "micro.partial"
    kept = sorted(part.glob("model-*.safetensors"))
    assert not out.exists() and not list(part.glob("*.tmp"))
    assert len(kept) == cut
    handles = [open(f, "rb") for f in kept]  # held open, so a rewritten file could not reuse an old inode
    try:
        inodes = {f.name: os.fstat(h.fileno()).st_ino for f, h in zip(kept, handles, strict=True)}
        again = write_synthetic(micro_args, out, seed=1, max_shard_bytes=shard_bytes)
        assert {f: (again / f).stat().st_ino for f in inodes} == inodes
    finally:
        for h in handles:
            h.close()
    assert not part.exists()
    with Checkpoint(micro_ckpt) as a, Checkpoint(again) as b:
        assert a.names() == b.names()
        for name in a.names():
            assert a.view(name).tobytes() == b.view(name).tobytes(), name

    written = 0
    with pytest.raises(_Stop):
        write_synthetic(micro_args, tmp_path / "x", seed=1, max_shard_bytes=shard_bytes, progress=stop_after)
    stale = sorted((tmp_path / "x.partial").glob("model-*.safetensors"))
    assert stale
    handles = [open(f, "rb") for f in stale]
    try:
        old = {f.name: os.fstat(h.fileno()).st_ino for f, h in zip(stale, handles, strict=True)}
        other = write_synthetic(micro_args, tmp_path / "x", seed=2, max_shard_bytes=shard_bytes)
        assert all((other / f).stat().st_ino != ino for f, ino in old.items())
    finally:
        for h in handles:
            h.close()
    with Checkpoint(other) as c, Checkpoint(micro_ckpt) as a:
        name = "layers.1.attn.wkv.weight"
        assert c.view(name).tobytes() != a.view(name).tobytes()


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


def _wide_range_values(args, seed: int) -> dict[str, np.ndarray]:
    """A value for every weight of the layout: rows of N(0, 1) times 10^U(-4, 2), so the 128x128 FP8 blocks and
    1x32 FP4 groups mix magnitudes (e4m3 subnormals and flushes to zero happen); distinct experts per token."""
    rng = np.random.default_rng(seed)
    out: dict[str, np.ndarray] = {}
    for spec in checkpoint_tensors(args):
        if spec.kind == "scale":
            continue
        shape = spec.logical_shape
        if spec.dtype == "I64":
            out[spec.name] = np.argsort(rng.random((shape[0], args.n_routed_experts)), axis=1)[:, : shape[1]]
            continue
        rows = shape[0] if len(shape) == 2 else 1
        mag = 10.0 ** rng.uniform(-4, 2, size=(rows, 1) if len(shape) == 2 else 1)
        out[spec.name] = (rng.standard_normal(shape) * mag).astype(np.float32)
    return out


def _release_rounding(spec, v: np.ndarray) -> np.ndarray:
    """What the release format can hold of ``v`` (the format's definition, computed here in float64): FP8 per
    128x128 block with scale 2^ceil(log2(amax/448)), FP4 per 1x32 group with 2^ceil(log2(amax/6)), each value
    rounded to nearest-even in e4m3 / e2m1; BF16 rounded to nearest-even; F32 and I64 unchanged."""
    if spec.kind in ("fp8", "fp4"):
        bo, bi, qmax, fmt = (128, 128, 448.0, ml_dtypes.float8_e4m3fn)
        if spec.kind == "fp4":
            bo, bi, qmax, fmt = (1, 32, 6.0, ml_dtypes.float4_e2m1fn)
        rows, cols = v.shape
        amax = np.abs(v.astype(np.float64)).reshape(rows // bo, bo, cols // bi, bi).max(axis=(1, 3))
        scale = np.exp2(np.ceil(np.log2(np.maximum(amax, 1e-300) / qmax)).clip(-127, 127))
        full = np.repeat(np.repeat(scale, bo, 0), bi, 1)
        return ((v / full).astype(fmt).astype(np.float64) * full).astype(np.float32)
    if spec.dtype == "BF16":
        return v.astype(ml_dtypes.bfloat16).astype(np.float32)
    return v


def test_given_values_are_written_as_their_release_rounding(tmp_path, micro_args, npdecode):
    """``write_synthetic(values=...)`` instead of the generator: read back by Checkpoint and dequantized, every
    weight equals its input rounded to the release format; rewriting what was read back changes nothing."""
    values = _wide_range_values(micro_args, seed=3)
    ckpt = write_synthetic(micro_args, tmp_path / "given", values=values, max_shard_bytes=2 << 20)
    checked = {"fp8": 0, "fp4": 0, "plain": 0}
    back: dict[str, np.ndarray] = {}
    with Checkpoint(ckpt) as ck:  # validates the layout: names, dtypes, shapes
        assert len(ck.shard_names()) >= 2
        for spec in ck.weights():
            got = back[spec.name] = ck.dequantize(spec.name)
            want = _release_rounding(spec, values[spec.name])
            if spec.dtype == "I64":
                assert got.dtype == np.int64 and np.array_equal(got, want), spec.name
            else:
                assert npdecode.same_bits(got, want), spec.name
            checked[spec.kind] += 1
    n_weights = sum(1 for s in checkpoint_tensors(micro_args) if s.kind != "scale")
    assert sum(checked.values()) == len(values) == n_weights
    assert checked["fp8"] == 52 and checked["fp4"] == 144
    # the rounding is real (not a pass-through) yet idempotent: written again, the read-back values come back equal
    fp8 = "layers.1.attn.wq_a.weight"
    assert not np.array_equal(back[fp8], values[fp8])
    again = write_synthetic(micro_args, tmp_path / "again", values=back)
    with Checkpoint(again) as ck:
        for name, v in back.items():
            got = ck.dequantize(name)
            assert np.array_equal(got, v) if v.dtype == np.int64 else npdecode.same_bits(got, v), name


def test_given_values_missing_or_misshaped_name_the_tensor(tmp_path, micro_args):
    values = _wide_range_values(micro_args, seed=4)
    mtp = "mtp.0.e_proj.weight"
    cases = [
        ({k: v for k, v in values.items() if k != mtp}, rf"no value for tensor '{mtp}'.*\(256, 256\)"),
        ({**values, mtp: values[mtp][:, :128]}, rf"tensor '{mtp}' has shape \(256, 128\), expected \(256, 256\)"),
        (
            {**values, "layers.0.ffn.experts.1.w2.weight": values["layers.0.ffn.experts.1.w2.weight"][:, ::2]},
            r"tensor 'layers.0.ffn.experts.1.w2.weight' has shape \(256, 128\), expected \(256, 256\)",
        ),
        ({**values, "layers.0.attn.wq_a.scale": np.ones((1, 2), np.float32)}, r"'layers.0.attn.wq_a.scale'"),
        ({**values, "layers.0.ffn.gate.tid2eid": values["layers.0.ffn.gate.tid2eid"] * 1.0}, r"tid2eid.*I64"),
        ({**values, "norm.weight": np.full(micro_args.dim, np.nan, np.float32)}, r"'norm.weight'.*NaN"),
    ]
    for i, (given, pattern) in enumerate(cases):
        out = tmp_path / f"bad{i}"
        with pytest.raises(SynthError, match=pattern):
            write_synthetic(micro_args, out, values=given)
        assert not out.exists() and not out.with_name(out.name + ".partial").exists()
