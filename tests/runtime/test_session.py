"""Sessions of the C++ runtime: save/restore gives identical subsequent logits (must-show 3), KV byte
accounting vs the analytic formula (entry bytes over m per compressed layer, plus an indexer entry over 4 in
CSA layers; must-show 4, KV part), clear errors on bad input, exact-mode
decode steps equal to one prefill."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from gguf import GGUFWriter

from dsv4_gguf import _C, runtime


@pytest.fixture(scope="module")
def model(small_gguf):
    return runtime.load(small_gguf("MXFP4_MOE"), threads=2)


def test_save_restore_identical_logits(model, tokens600, tmp_path):
    s = model.session(ctx=1024)
    s.prefill(tokens600[:259])  # mid-block for m=4 and m=128, window wrapped twice
    s.save(tmp_path / "state.bin")
    after = [s.decode(int(t)) for t in tokens600[259:300]]
    r = model.session(ctx=1024)
    r.load_state(tmp_path / "state.bin")
    assert r.pos == 259
    again = [r.decode(int(t)) for t in tokens600[259:300]]
    assert all(np.array_equal(a, b) for a, b in zip(after, again, strict=True))
    assert not (tmp_path / "state.bin.tmp").exists()


def test_state_file_errors(model, small_gguf, tmp_path):
    s = model.session(ctx=512)
    s.prefill(np.arange(10))
    s.save(tmp_path / "st")
    data = (tmp_path / "st").read_bytes()
    (tmp_path / "trunc").write_bytes(data[: len(data) // 2])
    with pytest.raises(RuntimeError, match="truncated"):
        model.session(ctx=512).load_state(tmp_path / "trunc")
    with pytest.raises(RuntimeError, match="another model or KV dtype"):
        model.session(ctx=512, kv_dtype="bf16").load_state(tmp_path / "st")


def entry_bytes(dim: int, rope: int, kv_dtype: str, fp8_dims: int) -> int:
    """Bytes of one cached entry: f32/bf16 per element; FP8 = e4m3 codes of the
    non-rope dims + one E8M0 scale per 64 (main) / 32 (indexer) + bf16 rope dims, padded to 4 bytes
    (584 B per main entry: the size of vLLM's DeepSeek-V4 FP8 KV entry)."""
    if kv_dtype != "fp8":
        return dim * {"f32": 4, "bf16": 2}[kv_dtype]
    block = 64 if fp8_dims < dim else 32
    return -(-(fp8_dims + fp8_dims // block + 2 * (dim - fp8_dims)) // 4) * 4


def analytic_per_token(a, kv_dtype: str) -> float:
    total = 0.0
    for m in a.compress_ratios[: a.n_layers]:
        if m:
            total += entry_bytes(a.head_dim, a.rope_head_dim, kv_dtype, a.head_dim - a.rope_head_dim) / m
        if m == 4:
            total += entry_bytes(a.index_head_dim, 0, kv_dtype, a.index_head_dim) / 4
    return total


def test_analytic_formula_known_values():
    from dsv4_gguf.config import PRESETS

    flash, pro = PRESETS["flash"], PRESETS["pro"]
    assert entry_bytes(512, 64, "fp8", 448) == 584 and entry_bytes(128, 0, "fp8", 128) == 132
    # V4-Flash BF16: 21 CSA layers x (1024 B / 4 + 256 B / 4) + 20 HCA layers x 1024 B / 128 = 6,880 B
    assert analytic_per_token(flash, "bf16") == 6880
    assert round(analytic_per_token(flash, "fp8")) == 3850  # FP8 584 B + FP8 indexer 132 B: 3,850 B
    assert analytic_per_token(pro, "bf16") == 9848 and round(analytic_per_token(pro, "fp8")) == 5511


@pytest.mark.parametrize("kv_dtype", ["bf16", "f32", "fp8"])
def test_kv_bytes_match_analytic_at_64k(model, small_args, kv_dtype):
    ctx = 65536
    s = model.session(ctx=ctx, kv_dtype=kv_dtype)
    kv = s.kv_bytes()
    analytic = analytic_per_token(small_args, kv_dtype)
    assert kv["per_token"] == pytest.approx(analytic, rel=1e-12)
    per_token_total = kv["total"] / ctx  # includes the 128-entry windows and compressor states
    assert abs(per_token_total / analytic - 1) < 0.05, (per_token_total, analytic)


def test_kv_fp8_storage_is_lossless_for_qat_rows(model, tokens600):
    """With the QAT simulation on, the cached non-rope dims already sit on the e4m3 grid with the
    same power-of-two block scales (indexer: e2m1 x 2^k), so FP8 storage changes only the bf16 rope dims."""
    a = model.session(ctx=1024, kv_dtype="bf16").prefill(tokens600[:200], all_logits=True)
    b = model.session(ctx=1024, kv_dtype="fp8").prefill(tokens600[:200], all_logits=True)
    assert np.array_equal(a, b)


def test_kv_bf16_close_to_f32(model, tokens600):
    a = model.session(ctx=1024).prefill(tokens600[:200], all_logits=True)
    b = model.session(ctx=1024, kv_dtype="bf16").prefill(tokens600[:200], all_logits=True)
    # bf16 rounding of the cached KV (8-bit mantissa) flips some random-router choices: smoke bounds only
    assert np.median(np.abs(a - b)) < 0.05 and (a.argmax(-1) == b.argmax(-1)).mean() > 0.9


def test_bad_tokens_and_context(model):
    s = model.session(ctx=16)
    with pytest.raises(IndexError, match="outside the vocabulary"):
        s.prefill([1, 2, model.vocab_size])
    with pytest.raises(IndexError, match="outside the vocabulary"):
        s._s.forward(np.array([-1], dtype=np.int32))
    s.prefill(np.arange(10))
    with pytest.raises(ValueError, match="context overflow"):
        s.prefill(np.arange(7))
    assert s.pos == 10  # the failed call consumed nothing
    with pytest.raises(ValueError, match="non-empty"):
        s.prefill([])


def test_wrong_arch_truncated_missing(tmp_path, small_gguf):
    w = GGUFWriter(str(tmp_path / "llama.gguf"), "llama")
    w.add_uint32("llama.block_count", 1)
    w.add_tensor("token_embd.weight", np.zeros((4, 32), np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    with pytest.raises(ValueError, match="architecture is 'llama'"):
        runtime.load(tmp_path / "llama.gguf")
    src = small_gguf("Q8_0")
    data = src.read_bytes()
    (tmp_path / "cut.gguf").write_bytes(data[: len(data) - 1000])
    with pytest.raises(_C.GgufError, match="truncated file"):
        runtime.load(tmp_path / "cut.gguf")
    (tmp_path / "junk.gguf").write_bytes(b"NOPE" + data[4:64])
    with pytest.raises(ValueError, match="not a GGUF"):
        runtime.load(tmp_path / "junk.gguf")
    with pytest.raises(FileNotFoundError):
        runtime.load(tmp_path / "absent.gguf")
    shutil.copy(src, tmp_path / "ok.gguf")
    assert runtime.load(tmp_path / "ok.gguf").config["n_layers"] == 5


@pytest.mark.parametrize("variant", ["MXFP4_MOE", "Q4_K_M", "BF16"])
def test_exact_decode_equals_prefill(small_gguf, tokens600, variant):
    """Exact mode (f32 activations against dequantized weights), the CUDA backend's parity reference
    (tests/cuda/test_backends.py): 300 decode steps equal one prefill bit for bit (window ring reuse, two HCA
    blocks, more CSA entries than index_topk)."""
    toks = tokens600[:300]
    model = runtime.load(small_gguf(variant), threads=2, exact=True)
    full = model.session(ctx=512).prefill(toks, all_logits=True)
    s = model.session(ctx=512)
    dec = np.stack([s.decode(int(t)) for t in toks])
    assert np.array_equal(full, dec), f"{variant}: prefill vs decode max diff {np.abs(full - dec).max():.3g}"


def test_thread_count_does_not_change_logits(small_gguf, tokens600):
    """Rows are split over threads, never a reduction: 1 and 2 threads give bit-equal logits."""
    one = runtime.load(small_gguf("Q4_K_M"), threads=1).session(ctx=256).prefill(tokens600[:150], all_logits=True)
    two = runtime.load(small_gguf("Q4_K_M"), threads=2).session(ctx=256).prefill(tokens600[:150], all_logits=True)
    assert np.array_equal(one, two)


def test_long_chunks_after_a_prefix_and_full_context(model, tokens600):
    """Chunks longer than the 128-token window starting mid-sequence (ring rows + chunk rows), and a
    session filled exactly to its context."""
    full = model.session(ctx=600).prefill(tokens600, all_logits=True)
    s = model.session(ctx=600)
    a = s.prefill(tokens600[:50], all_logits=True)
    b = s.prefill(tokens600[50:], all_logits=True, chunk_size=300)
    assert np.array_equal(full, np.concatenate([a, b])) and s.pos == s.ctx == 600
    with pytest.raises(ValueError, match="context overflow"):
        s.decode(1)
