"""requantize (ours -> other variants, byte-identical where the math is), imatrix files (GGUF and legacy
.dat), --tensor-type, --only / --compare-tensor and inspect."""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path

import numpy as np
import pytest
from gguf import GGMLQuantizationType as Q

from dsv4_gguf.cli import main


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def test_requantize_source_to_mxfp4_moe_is_identical(convert_tiny, tmp_path):
    """BF16 holds the FP8 values exactly, so SOURCE -> MXFP4_MOE equals converting the checkpoint directly."""
    out = tmp_path / "tiny-MXFP4_MOE.gguf"
    assert main(["requantize", str(convert_tiny("SOURCE")), str(out), "--type", "MXFP4_MOE"]) == 0
    ref = convert_tiny("MXFP4_MOE")
    assert _sha(out) == _sha(ref)
    assert _sha(out.with_name("mtp-" + out.name)) == _sha(ref.with_name("mtp-" + ref.name))


def test_requantize_to_q4_k_m_runs(convert_tiny, tmp_path, llama_logits):
    from dsv4_gguf import open_gguf

    out = tmp_path / "r.gguf"
    assert (
        main(
            [
                "requantize",
                str(convert_tiny("MXFP4_MOE")),
                str(out),
                "--type",
                "Q4_K_M",
                "--tensor-type",
                "token_embd|output\\.weight=q8_0",
            ]
        )
        == 0
    )
    m = open_gguf(out)
    assert m.info("blk.1.attn_output_b.weight").qtype == Q.Q4_K
    assert m.info("output.weight").qtype == Q.Q8_0  # override before the recipe
    assert np.isfinite(llama_logits(out)).all()


def _imatrix_gguf(path: Path, name: str, n_mat: int, ne0: int, seed: int = 0) -> np.ndarray:
    from dsv4_gguf.gguf_io import KV, TensorEntry, write_plain

    rng = np.random.default_rng(seed)
    sums = rng.random((n_mat, ne0), dtype=np.float32) * 10
    counts = np.full((n_mat, 1), 4.0, np.float32)
    counts[1] = 0  # an expert never routed to: llama.cpp uses 1.0
    write_plain(
        path,
        [KV("general.type", "str", "imatrix"), KV("imatrix.chunk_count", "u32", 1)],
        [
            (TensorEntry(name + ".in_sum2", (n_mat, ne0), Q.F32), sums),
            (TensorEntry(name + ".counts", (n_mat, 1), Q.F32), counts),
        ],
    )
    mean = sums / np.maximum(counts, 1)
    mean[1] = 1.0
    return mean


def _imatrix_dat(path: Path, entries: dict[str, np.ndarray], ncall: int = 2) -> None:
    b = struct.pack("<i", len(entries))
    for name, v in entries.items():
        nb = name.encode()
        b += struct.pack("<i", len(nb)) + nb + struct.pack("<ii", ncall, v.size) + (v * ncall).astype("<f4").tobytes()
    b += struct.pack("<i", 1) + struct.pack("<i", 4) + b"data"
    path.write_bytes(b)


def test_imatrix_formats(tmp_path):
    from dsv4_gguf.quantize.imatrix import ImatrixError, imatrix_for, load_imatrix

    name = "blk.2.ffn_gate_exps.weight"
    mean = _imatrix_gguf(tmp_path / "im.gguf", name, 8, 256)
    im = load_imatrix(tmp_path / "im.gguf")
    np.testing.assert_allclose(imatrix_for(im, name, 8, 256), mean, rtol=1e-6)
    with pytest.raises(ImatrixError, match="different model"):
        imatrix_for(im, name, 4, 256)
    v = np.arange(1, 257, dtype=np.float32)
    _imatrix_dat(tmp_path / "im.dat", {"blk.1.attn_q_a.weight": v})
    im2 = load_imatrix(tmp_path / "im.dat")
    np.testing.assert_allclose(imatrix_for(im2, "blk.1.attn_q_a.weight", 1, 256)[0], v)
    (tmp_path / "bad.dat").write_bytes(b"\x05\x00\x00\x00\x03")
    with pytest.raises(ImatrixError):
        load_imatrix(tmp_path / "bad.dat")


def test_imatrix_changes_iq2_experts(tiny_ckpt, tmp_path):
    """--imatrix reaches the IQ2_XXS quantizer (per expert); without it the weight-energy fallback is used."""
    from dsv4_gguf import open_gguf

    name = "blk.2.ffn_gate_exps.weight"
    _imatrix_gguf(tmp_path / "im.gguf", name, 8, 256)
    outs = []
    for extra in ([], ["--imatrix", str(tmp_path / "im.gguf")]):
        out = tmp_path / f"o{len(outs)}.gguf"
        assert (
            main(
                ["convert", str(tiny_ckpt), "-o", str(out), "--type", "IQ2_XXS-MOE", "--only", name, "--no-mtp", *extra]
            )
            == 0
        )
        outs.append(np.asarray(open_gguf(out).raw(name)))
        assert open_gguf(out).names() == [name]
    assert outs[0].shape == outs[1].shape and not np.array_equal(outs[0], outs[1])


def test_compare_tensor(convert_tiny, tiny_ckpt, capsys):
    path = convert_tiny("Q4_K_M", mtp=False)
    assert (
        main(
            [
                "convert",
                str(tiny_ckpt),
                "-o",
                str(path),
                "--type",
                "Q4_K_M",
                "--no-mtp",
                "--compare-tensor",
                "blk.3.attn_kv.weight",
            ]
        )
        == 0
    )
    assert "identical bytes" in capsys.readouterr().out
    assert (
        main(
            [
                "convert",
                str(tiny_ckpt),
                "-o",
                str(path),
                "--type",
                "Q4_K_M",
                "--no-mtp",
                "--tensor-type",
                "attn_kv=q8_0",
                "--compare-tensor",
                "blk.3.attn_kv.weight",
            ]
        )
        == 1
    )
    out = capsys.readouterr().out
    assert "differs" in out and "relative RMS diff" in out


def test_inspect(convert_tiny, capsys):
    assert main(["inspect", str(convert_tiny("MXFP4_MOE"))]) == 0
    out = capsys.readouterr().out
    assert "arch: deepseek4" in out and "MXFP4_MOE" in out and "bpw" in out and "MTP sidecar" in out
    assert "Q8_0" in out and "deepseek4.attention.compress_ratios" in out and "joyai-llm" in out


def _llama_quantize(src: Path, dst: Path, ftype: int) -> None:
    """llama-quantize through llama-cpp-python, in a subprocess (its log callback chokes on token text)."""
    import subprocess
    import sys

    pytest.importorskip("llama_cpp")
    code = (
        f"import llama_cpp; p = llama_cpp.llama_model_quantize_default_params(); p.ftype = {ftype}; "
        f"p.nthread = 2; p.allow_requantize = True; "
        f"raise SystemExit(llama_cpp.llama_model_quantize({str(src)!r}.encode(), {str(dst)!r}.encode(), p))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]


def test_requantize_llama_cpp_written_file(convert_tiny, tmp_path, llama_logits):
    """A deepseek4 GGUF written by llama.cpp (llama-quantize, Q8_0) is read and requantized by us."""
    from dsv4_gguf import open_gguf

    lc = tmp_path / "lc-q8.gguf"
    _llama_quantize(convert_tiny("SOURCE", mtp=False), lc, 7)  # LLAMA_FTYPE_MOSTLY_Q8_0
    m = open_gguf(lc)
    assert m.info("blk.2.ffn_gate_exps.weight").qtype == Q.Q8_0
    out = tmp_path / "ours.gguf"
    assert main(["requantize", str(lc), str(out), "--type", "Q4_K_M"]) == 0
    assert open_gguf(out).info("output.weight").qtype == Q.Q6_K
    assert np.isfinite(llama_logits(out)).all()


def test_requantize_cache_reuses_iquant_tensors(convert_tiny, tmp_path, capsys):
    """--cache: a second requantize that needs the same i-quant tensors (same input, type, imatrix) takes them
    from the cache, and every file is byte-identical to one written without it; an entry whose bytes were
    altered is not used (made again); another imatrix is another key."""
    src = convert_tiny("SOURCE", mtp=False)
    cache = tmp_path / "cache"
    names = ["blk.2.ffn_gate_exps.weight", "blk.2.ffn_up_exps.weight", "blk.2.ffn_down_exps.weight"]
    im = tmp_path / "im.gguf"
    _imatrix_gguf(im, names[0], 8, 256)

    def requant(out: Path, variant: str, *extra: str) -> tuple[int, int]:
        capsys.readouterr()
        assert main(["requantize", str(src), str(out), "--type", variant, "--only", "ffn_.*_exps", *extra]) == 0
        line = next(ln for ln in capsys.readouterr().out.splitlines() if ln.startswith("cache "))
        hits, misses = (int(w) for w in line.split(": ")[1].replace(",", "").split() if w.isdigit())
        return hits, misses

    plain = tmp_path / "plain.gguf"
    assert main(["requantize", str(src), str(plain), "--type", "IQ2_XXS-DS4", "--only", "ffn_.*_exps"]) == 0
    # IQ2_XXS-DS4: gate/up IQ2_XXS (cached), down Q2_K (a K-quant: not cached); tiny has layers 0..2
    n_layers = sum(1 for n in open_gguf_names(plain) if n.endswith("ffn_gate_exps.weight"))
    assert requant(tmp_path / "a.gguf", "IQ2_XXS-DS4", "--cache", str(cache)) == (0, 2 * n_layers)
    assert _sha(tmp_path / "a.gguf") == _sha(plain)
    assert len(list(cache.glob("*.bin"))) == 2 * n_layers and not list(cache.glob("*.tmp"))
    # IQ2_XXS-MOE has the same expert types: everything from the cache, the same bytes
    assert requant(tmp_path / "b.gguf", "IQ2_XXS-MOE", "--cache", str(cache)) == (2 * n_layers, 0)
    moe = tmp_path / "moe.gguf"
    assert main(["requantize", str(src), str(moe), "--type", "IQ2_XXS-MOE", "--only", "ffn_.*_exps"]) == 0
    assert _sha(tmp_path / "b.gguf") == _sha(moe)
    # one altered byte in one entry: that entry is dropped and quantized again, the output is still right
    victim = sorted(cache.glob("*.bin"))[0]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 1
    victim.write_bytes(bytes(data))
    assert requant(tmp_path / "c.gguf", "IQ2_XXS-DS4", "--cache", str(cache)) == (2 * n_layers - 1, 1)
    assert _sha(tmp_path / "c.gguf") == _sha(plain)
    # another imatrix changes the quantizer's input: new entries, never the old bytes
    assert requant(tmp_path / "d.gguf", "IQ2_XXS-DS4", "--cache", str(cache), "--imatrix", str(im)) == (
        2 * n_layers - 1,
        1,
    )
    ref = tmp_path / "d_ref.gguf"
    assert main(["requantize", str(src), str(ref), "--type", "IQ2_XXS-DS4", "--only", "ffn_.*_exps", "--imatrix",
                 str(im)]) == 0  # fmt: skip
    assert _sha(tmp_path / "d.gguf") == _sha(ref) != _sha(plain)


def open_gguf_names(path: Path) -> list[str]:
    from dsv4_gguf import open_gguf

    return open_gguf(path).names()


def test_requantize_cache_that_cannot_be_written_is_skipped(convert_tiny, tmp_path, monkeypatch):
    """A cache write that fails (disk full) leaves no entry and no temporary file, and the output is still the
    one written without a cache."""
    import errno

    from dsv4_gguf.quantize import tensor_cache

    src = convert_tiny("SOURCE", mtp=False)
    real_open = open

    class Full:
        def __init__(self, f):
            self.f, self.n = f, 0

        def write(self, b):
            self.n += 1
            if self.n > 2:  # the header and the first piece go through, then the disk is full
                raise OSError(errno.ENOSPC, "No space left on device")
            return self.f.write(b)

        def __getattr__(self, k):
            return getattr(self.f, k)

    monkeypatch.setattr(tensor_cache, "open", lambda p, m="r", *a: Full(real_open(p, m, *a)), raising=False)
    out, ref = tmp_path / "o.gguf", tmp_path / "ref.gguf"
    cache = tmp_path / "cache"
    args = ["--type", "IQ2_XXS-DS4", "--only", "ffn_gate_exps"]
    assert main(["requantize", str(src), str(out), *args, "--cache", str(cache)]) == 0
    assert main(["requantize", str(src), str(ref), *args]) == 0
    assert _sha(out) == _sha(ref)
    assert list(cache.iterdir()) == []
