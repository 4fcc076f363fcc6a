"""Every bad input gives a clear error naming the file/tensor, exit code 1, and nothing at the final path."""

from __future__ import annotations

import errno
import json
import os
import struct
from pathlib import Path

from dsv4_gguf.cli import main

SHARD_OF = "model.safetensors.index.json"


def _own(p: Path) -> Path:
    tmp = p.with_name(p.name + ".own")
    tmp.write_bytes(p.read_bytes())
    os.replace(tmp, p)
    return p


def _shard_of(ck: Path, name: str) -> Path:
    return ck / json.loads((ck / SHARD_OF).read_text())["weight_map"][name]


def _edit_header(shard: Path, fn) -> None:
    """Rewrite a safetensors header in place, keeping its length (so data offsets stay valid)."""
    _own(shard)
    with open(shard, "r+b") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        head = json.loads(f.read(n))
        fn(head)
        raw = json.dumps(head, separators=(",", ":")).encode()
        assert len(raw) <= n
        f.seek(8)
        f.write(raw + b" " * (n - len(raw)))


def _run(ck: Path, out: Path, *extra: str, capsys) -> tuple[int, str]:
    rc = main(["convert", str(ck), "-o", str(out), "--no-mtp", *extra])
    err = capsys.readouterr().err
    return rc, err


def _assert_fails(ck, tmp_path, capsys, *needles, extra=()):
    out = tmp_path / "out.gguf"
    rc, err = _run(ck, out, *extra, capsys=capsys)
    assert rc == 1, err
    for n in needles:
        assert n in err, err
    assert not out.exists()
    return err


def test_missing_shard(ckpt_copy, tmp_path, capsys):
    shard = _shard_of(ckpt_copy, "layers.1.attn.wq_a.weight")
    shard.unlink()
    _assert_fails(ckpt_copy, tmp_path, capsys, shard.name, "missing")


def test_missing_tensor_and_scale(ckpt_copy, tmp_path, capsys):
    for name in ("layers.3.attn.wkv.weight", "layers.2.ffn.experts.5.w2.scale"):
        _edit_header(_shard_of(ckpt_copy, name), lambda h, n=name: h.pop(n))
    idx = json.loads((ckpt_copy / SHARD_OF).read_text())
    for name in ("layers.3.attn.wkv.weight", "layers.2.ffn.experts.5.w2.scale"):
        del idx["weight_map"][name]
    idx["metadata"].pop("total_size")
    _own(ckpt_copy / SHARD_OF).write_text(json.dumps(idx))
    err = _assert_fails(ckpt_copy, tmp_path, capsys, "layers.3.attn.wkv.weight", "layers.2.ffn.experts.5.w2.scale")
    assert "cannot be dequantized without it" in err


def test_wrong_shape(ckpt_copy, tmp_path, capsys):
    name = "layers.1.attn.wq_b.weight"

    def swap(h):
        h[name]["shape"] = h[name]["shape"][::-1]

    _edit_header(_shard_of(ckpt_copy, name), swap)
    _assert_fails(ckpt_copy, tmp_path, capsys, name, "is F8_E4M3[128, 512], expected F8_E4M3[512, 128]")


def test_wrong_dtype(ckpt_copy, tmp_path, capsys):
    name = "layers.1.attn_norm.weight"

    def f16(h):
        h[name]["dtype"] = "F16"

    _edit_header(_shard_of(ckpt_copy, name), f16)
    _assert_fails(ckpt_copy, tmp_path, capsys, name, "is F16", "expected BF16")


def test_unsupported_config(ckpt_copy, tmp_path, capsys):
    cfg = json.loads((ckpt_copy / "config.json").read_text())
    cfg["compress_ratios"][1] = 16
    (ckpt_copy / "config.json").unlink()
    (ckpt_copy / "config.json").write_text(json.dumps(cfg))
    _assert_fails(ckpt_copy, tmp_path, capsys, "compress_ratios[1]", "16")


def test_truncated_shard(ckpt_copy, tmp_path, capsys):
    shard = _own(_shard_of(ckpt_copy, "layers.4.ffn.experts.7.w3.weight"))
    os.truncate(shard, shard.stat().st_size - 1000)
    _assert_fails(ckpt_copy, tmp_path, capsys, shard.name, "truncated")


def test_corrupt_scale_names_tensor(ckpt_copy, tmp_path, capsys):
    """An E8M0 NaN byte (0xFF) in an expert scale: refused, tensor named, partial kept for --resume."""
    from dsv4_gguf.checkpoint import Checkpoint

    name = "layers.2.ffn.experts.3.w1.scale"
    with Checkpoint(ckpt_copy) as ck:
        info = ck.info(name)
    shard = _own(_shard_of(ckpt_copy, name))
    with open(shard, "r+b") as f:
        f.seek(info.begin + 5)
        f.write(b"\xff")
    err = _assert_fails(ckpt_copy, tmp_path, capsys, "blk.2.ffn_gate_exps.weight", name, "0xFF")
    assert "corrupt" in err
    assert (tmp_path / "out.gguf.partial").exists()


def test_nan_in_fp8_weight(ckpt_copy, tmp_path, capsys):
    from dsv4_gguf.checkpoint import Checkpoint

    name = "layers.3.attn.wq_b.weight"
    with Checkpoint(ckpt_copy) as ck:
        info = ck.info(name)
    shard = _own(_shard_of(ckpt_copy, name))
    with open(shard, "r+b") as f:
        f.seek(info.begin + 77)
        f.write(b"\x7f")  # E4M3 NaN
    _assert_fails(ckpt_copy, tmp_path, capsys, "blk.3.attn_q_b.weight", "non-finite")


def test_output_exists(tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "out.gguf"
    out.write_bytes(b"precious")
    rc, err = _run(tiny_ckpt, out, "--only", "output_norm", capsys=capsys)
    assert rc == 1 and "already exists" in err and "--overwrite" in err
    assert out.read_bytes() == b"precious"
    rc, err = _run(tiny_ckpt, out, "--only", "output_norm", "--overwrite", capsys=capsys)
    assert rc == 0, err
    assert out.read_bytes()[:4] == b"GGUF"


def test_not_enough_disk_space(tiny_ckpt, tmp_path, capsys, monkeypatch):
    import shutil

    from dsv4_gguf.quantize import convert as conv

    real = shutil.disk_usage
    monkeypatch.setattr(conv.shutil, "disk_usage", lambda p: real(p)._replace(free=10 << 20))
    out = tmp_path / "out.gguf"
    rc, err = _run(tiny_ckpt, out, capsys=capsys)
    assert rc == 1 and "bytes free" in err and "needs" in err
    assert not list(tmp_path.iterdir())  # checked before anything is written


def test_disk_full_while_writing(tiny_ckpt, tmp_path, capsys, monkeypatch):
    from dsv4_gguf.quantize import convert as conv

    class Full:
        def __init__(self, f, limit):
            self.f, self.left = f, limit

        def write(self, b):
            n = len(memoryview(b).cast("B"))
            if n > self.left:
                raise OSError(errno.ENOSPC, "No space left on device")
            self.left -= n
            return self.f.write(b)

        def __getattr__(self, k):
            return getattr(self.f, k)

        def __enter__(self):
            return self

        def __exit__(self, *e):
            self.f.close()

    def fake_open(path, mode="r", *a, **kw):
        f = open(path, mode, *a, **kw)
        return Full(f, 20 << 20) if "b" in mode and str(path).endswith(".partial") else f

    monkeypatch.setattr(conv, "open", fake_open, raising=False)
    out = tmp_path / "out.gguf"
    rc, err = _run(tiny_ckpt, out, capsys=capsys)
    assert rc == 1 and "disk full" in err and "--resume" in err
    assert not out.exists()
    monkeypatch.undo()
    rc, err = _run(tiny_ckpt, out, "--resume", capsys=capsys)  # space freed: finishes
    assert rc == 0, err


def test_bad_tensor_type_and_variant(tiny_ckpt, tmp_path, capsys):
    rc, err = _run(tiny_ckpt, tmp_path / "o.gguf", "--tensor-type", "attn=q9_9", capsys=capsys)
    assert rc == 1 and "unknown type" in err
    rc, err = _run(tiny_ckpt, tmp_path / "o.gguf", "--type", "Q7_K", capsys=capsys)
    assert rc == 1 and "unknown variant" in err
    assert not list(tmp_path.glob("o.gguf*"))
