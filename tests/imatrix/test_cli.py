"""`dsv4-gguf imatrix` on the command line: its progress bar is drawn on a terminal only, after the inputs are
checked; a bad input is one line on stderr naming the file and the fix, exit code 1."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from dsv4_gguf.cli import main


def _bar_lines(err: str) -> list[str]:
    return [s for s in re.split(r"[\r\n]", err) if s.startswith("imatrix:")]


def test_bar_on_a_terminal_only(source_gguf: Path, calib: Path, tmp_path: Path, capsys, monkeypatch) -> None:
    argv = ["imatrix", str(source_gguf), "--text", str(calib), "--ctx", "64", "--chunks", "2", "--threads", "2"]
    assert main([*argv, "-o", str(tmp_path / "a.gguf")]) == 0
    got = capsys.readouterr()
    assert got.err == "" and got.out.startswith("wrote ")  # stderr is not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main([*argv, "-o", str(tmp_path / "b.gguf")]) == 0
    bars = _bar_lines(capsys.readouterr().err)
    assert bars and bars[-1].startswith("imatrix: 100%") and "| 2/2 [" in bars[-1], bars


@pytest.mark.parametrize("case", ["short text", "not a GGUF", "missing text", "text is a folder", "binary text"])
def test_bad_input_is_one_line_before_any_bar(
    case: str, source_gguf: Path, calib: Path, tmp_path: Path, capsys, monkeypatch
) -> None:
    model, text, extra = source_gguf, calib, ["--ctx", "64"]
    if case == "short text":
        extra = ["--ctx", "100000"]
        need = "fewer than one chunk of --ctx 100000"
    elif case == "not a GGUF":
        model = tmp_path / "junk.gguf"
        model.write_bytes(b"not a gguf" * 10)
        need = f"{model}: "
    elif case == "missing text":
        text = tmp_path / "nonexist.txt"
        need = f"{text}: no such file (give --text "
    elif case == "text is a folder":
        text = tmp_path
        need = f"{text}: is a folder (give --text "
    else:
        text = source_gguf
        need = f"{text}: not UTF-8 text (byte "
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)  # a bar would be drawn
    out = tmp_path / "im.gguf"
    assert main(["imatrix", str(model), "--text", str(text), "-o", str(out), "--threads", "2", *extra]) == 1
    err = capsys.readouterr().err
    assert not _bar_lines(err), err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dsv4-gguf imatrix: error: ") and need in lines[0], lines
    assert "Errno" not in lines[0] and not out.exists()


def test_an_os_error_names_the_file(tmp_path: Path, capsys) -> None:
    """An OSError that reaches the CLI's handler reads 'FILE: what; fix', not '[Errno 20] Not a directory: ...'."""
    import numpy as np
    from dsv4_gguf.quantize.imatrix import RawImatrix, write_imatrix

    src = tmp_path / "a.gguf"
    write_imatrix(src, RawImatrix({"blk.0.w.weight": np.ones((1, 32))}, {"blk.0.w.weight": np.ones(1)}, chunk_count=1))
    out = src / "merged.gguf"  # a path through a file
    assert main(["imatrix", "--merge", str(src), "-o", str(out)]) == 1
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"dsv4-gguf imatrix: error: {out}"), lines
    assert lines[0].endswith(": a part of the path is not a folder; check the path") and "Errno" not in lines[0]
