"""What the writers refuse (issue 21): an existing output without --overwrite, and their own input even with it
(imatrix collect and --merge, requantize, convert); requantize needs an explicit --type, will not call a file
made from a lossy one SOURCE, and records a lossy origin so that inspect shows it."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import numpy as np
import pytest


def _sha(p: Path) -> str:
    return hashlib.sha256(p.read_bytes()).hexdigest()


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    from dsv4_gguf.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = int(e.code or 0)
    got = capsys.readouterr()
    return rc, got.out, got.err


def _refused(rc: int, err: str, *needles: str) -> None:
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc in (1, 2) and len(lines) == 1 and "Traceback" not in err, (rc, err)
    for n in needles:
        assert n in lines[0], (n, lines[0])


def _imatrix(path: Path, seed: int) -> Path:
    from dsv4_gguf.quantize.imatrix import RawImatrix, write_imatrix

    rng = np.random.default_rng(seed)
    raw = RawImatrix({"blk.0.attn_q_a.weight": rng.random((1, 8))}, {"blk.0.attn_q_a.weight": np.full(1, 4.0)})
    raw.chunk_count, raw.chunk_size = 1, 32
    write_imatrix(path, raw)
    return path


def test_imatrix_refuses_an_existing_output(convert_tiny, tmp_path, capsys) -> None:
    model = convert_tiny("MXFP4_MOE", mtp=False)
    text = tmp_path / "t.txt"
    text.write_text(" ".join(f"word{i} and more" for i in range(200)), encoding="utf-8")
    out = tmp_path / "im.gguf"
    out.write_bytes(b"precious")
    args = ("imatrix", model, "--text", text, "-o", out, "--ctx", "32", "--chunks", "1", "--threads", "2")
    rc, _, err = _cli(capsys, *args)
    _refused(rc, err, str(out), "--overwrite")
    assert out.read_bytes() == b"precious"
    rc, _, err = _cli(capsys, *args, "--overwrite")
    assert rc == 0 and out.read_bytes()[:4] == b"GGUF", err


def test_imatrix_merge_refuses_its_own_input(tmp_path, capsys) -> None:
    a, b = _imatrix(tmp_path / "a.gguf", 0), _imatrix(tmp_path / "b.gguf", 1)
    before = _sha(a)
    for extra in ([], ["--overwrite"]):
        rc, _, err = _cli(capsys, "imatrix", "--merge", a, b, "-o", a, *extra)
        _refused(rc, err, str(a), "input")
        assert _sha(a) == before
    c = tmp_path / "c.gguf"
    c.write_bytes(b"precious")
    rc, _, err = _cli(capsys, "imatrix", "--merge", a, b, "-o", c)
    _refused(rc, err, str(c), "--overwrite")
    rc, _, err = _cli(capsys, "imatrix", "--merge", a, b, "-o", c, "--overwrite")
    assert rc == 0 and c.read_bytes()[:4] == b"GGUF", err


def test_requantize_refuses_its_own_input(convert_tiny, tmp_path, capsys) -> None:
    src = tmp_path / "m.gguf"
    shutil.copyfile(convert_tiny("MXFP4_MOE", mtp=False), src)
    before = _sha(src)
    rc, _, err = _cli(capsys, "requantize", src, src, "--type", "Q8_0", "--overwrite")
    _refused(rc, err, str(src), "input")
    assert _sha(src) == before


def test_convert_refuses_a_checkpoint_file_as_output(ckpt_copy, capsys) -> None:
    shard = sorted(ckpt_copy.glob("*.safetensors"))[0]
    before = _sha(shard)
    rc, _, err = _cli(capsys, "convert", ckpt_copy, "-o", shard, "--overwrite", "--no-mtp")
    _refused(rc, err, shard.name, "input")
    assert _sha(shard) == before


def test_requantize_needs_an_explicit_type(convert_tiny, tmp_path, capsys) -> None:
    rc, _, err = _cli(capsys, "requantize", convert_tiny("SOURCE", mtp=False), tmp_path / "o.gguf")
    _refused(rc, err, "--type")
    assert rc == 2 and not (tmp_path / "o.gguf").exists()


def test_requantize_to_source_from_a_lossy_file_is_refused(convert_tiny, tmp_path, capsys) -> None:
    out = tmp_path / "o.gguf"
    rc, _, err = _cli(capsys, "requantize", convert_tiny("IQ2_XXS-MOE", mtp=False), out, "--type", "SOURCE")
    _refused(rc, err, "SOURCE", "IQ2_XXS-MOE", "convert")
    assert rc == 1 and not out.exists()
    src = convert_tiny("SOURCE")
    rc, _, err = _cli(capsys, "requantize", src, out, "--type", "SOURCE")  # SOURCE from SOURCE: a plain copy
    assert rc == 0 and _sha(out) == _sha(src), err
    assert _sha(out.with_name("mtp-" + out.name)) == _sha(src.with_name("mtp-" + src.name))


def test_requantize_records_a_lossy_origin(convert_tiny, tmp_path, capsys) -> None:
    from dsv4_gguf import open_gguf

    out = tmp_path / "q8.gguf"
    rc, _, err = _cli(capsys, "requantize", convert_tiny("IQ2_XXS-MOE", mtp=False), out, "--type", "Q8_0")
    assert rc == 0, err
    origin = open_gguf(out).metadata["dsv4.requantized_from"]
    assert origin.startswith("IQ2_XXS-MOE (") and "bpw" in origin, origin
    rc, text, err = _cli(capsys, "inspect", out)
    assert rc == 0 and f"requantized from {origin}" in text.splitlines()[1], text
    again = tmp_path / "q4.gguf"
    assert _cli(capsys, "requantize", out, again, "--type", "Q4_K_M")[0] == 0
    assert open_gguf(again).metadata["dsv4.requantized_from"].startswith(f"{origin} -> Q8_0 (")
