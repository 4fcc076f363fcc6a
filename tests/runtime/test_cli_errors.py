"""A new user's first hour with ``run`` / ``chat`` / ``imatrix`` (issue 21): every mistake gets one line on
stderr naming the option or file and the fix, exit code 1 (handled) or 2 (usage), never a traceback
(``--debug`` shows one); ``chat`` survives a turn that does not fit its context; generation that stops at the
context limit says so."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

LONG = " ".join(f"word{i} and more words" for i in range(40))  # ~200 tokens


@pytest.fixture(scope="module")
def gguf(tiny_ckpt: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from dsv4_gguf.cli import main

    out = tmp_path_factory.mktemp("cli_errors") / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out), "--type", "MXFP4_MOE", "--no-mtp"]) == 0
    return out


def _cli(capsys: pytest.CaptureFixture[str], *argv: object) -> tuple[int, str, str]:
    from dsv4_gguf.cli import main

    capsys.readouterr()
    try:
        rc = main([str(a) for a in argv])
    except SystemExit as e:  # argparse
        rc = int(e.code or 0)
    got = capsys.readouterr()
    return rc, got.out, got.err


def _one_error_line(rc: int, err: str, *needles: str, code: int | None = None) -> str:
    lines = [x for x in err.splitlines() if x.strip()]
    assert rc in (1, 2) and (code is None or rc == code), (rc, err)
    assert len(lines) == 1 and "Traceback" not in err, err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _subprocess(*argv: object, stdin: str = "") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "dsv4_gguf.cli", *map(str, argv)],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_run_errors_are_one_line(gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _cli(capsys, "run", gguf, "-p", LONG, "-c", "64", "-n", "4", "-t", "2")
    line = _one_error_line(rc, err, "-c/--ctx", "prompt", code=1)
    assert "64" in line and "raise" in line
    rc, _, err = _cli(capsys, "run", gguf, "-p", "", "-t", "2")
    _one_error_line(rc, err, "-p/--prompt", "empty")
    rc, _, err = _cli(capsys, "run", gguf, "-p", "hi", "-c", "-5")
    _one_error_line(rc, err, "-c/--ctx", "-5", code=2)


def test_imatrix_on_truncated_gguf_is_one_line(gguf: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(gguf.read_bytes()[:100_000])
    text = tmp_path / "t.txt"
    text.write_text(LONG * 4, encoding="utf-8")
    rc, _, err = _cli(capsys, "imatrix", bad, "--text", text, "-o", tmp_path / "im.gguf", "--ctx", "32")
    _one_error_line(rc, err, str(bad), "truncated", code=1)
    assert not (tmp_path / "im.gguf").exists()


def test_debug_shows_the_traceback(gguf: Path, tmp_path: Path) -> None:
    bad = tmp_path / "truncated.gguf"
    bad.write_bytes(gguf.read_bytes()[:100_000])
    text = tmp_path / "t.txt"
    text.write_text(LONG, encoding="utf-8")
    args = ("imatrix", bad, "--text", text, "-o", tmp_path / "im.gguf")
    r = _subprocess(*args)
    assert r.returncode == 1 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    for argv in (("--debug", *args), (*args, "--debug")):
        r = _subprocess(*argv)
        assert r.returncode == 1 and "Traceback" in r.stderr, r.stderr
        assert r.stderr.strip().splitlines()[-1].startswith("dsv4-gguf imatrix: error:")


def test_chat_survives_an_overflowing_turn(gguf: Path) -> None:
    r = _subprocess("chat", gguf, "-c", "48", "-n", "3", "--temperature", "0", "-t", "2", stdin=f"{LONG}\nhi\n")
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    err = [x for x in r.stderr.splitlines() if "error" in x]
    assert len(err) == 1 and "-c/--ctx" in err[0] and "dropped" in err[0], r.stderr
    assert r.stderr.count("[prefill") == 1  # the second turn ran


@pytest.mark.parametrize(
    "extra, option",
    [
        (["--temperature", "-1"], "--temperature"),
        (["--temperature", "nan"], "--temperature"),
        (["--top-p", "5"], "--top-p"),
        (["--top-p", "0"], "--top-p"),
        (["-t", "-1"], "-t/--threads"),
        (["-c", "0"], "-c/--ctx"),
        (["-n", "-1"], "-n/--max-tokens"),
    ],
)
def test_out_of_range_options_are_refused(
    gguf: Path, capsys: pytest.CaptureFixture[str], extra: list[str], option: str
) -> None:
    for cmd in (["run", gguf, "-p", "hi"], ["chat", gguf]):
        rc, _, err = _cli(capsys, *cmd, *extra)
        _one_error_line(rc, err, option, code=2)


def test_think_needs_chat(gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc, _, err = _cli(capsys, "run", gguf, "-p", "hi", "--think", "high", "-t", "2")
    _one_error_line(rc, err, "--think", "--chat", code=2)
    rc, _, err = _cli(capsys, "run", gguf, "-p", "hi", "--think", "high", "--chat", "-n", "2", "-t", "2")
    assert rc == 0, err


def test_stopping_at_the_context_limit_is_reported(gguf: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from dsv4_gguf import runtime

    rc, _, err = _cli(capsys, "run", gguf, "-p", "hi", "-n", "100", "-c", "16", "--temperature", "0", "-t", "2")
    notes = [x for x in err.splitlines() if "context limit" in x]
    assert rc == 0 and len(notes) == 1 and "-c/--ctx 16" in notes[0], err
    rc, _, err = _cli(capsys, "run", gguf, "-p", "hi", "-n", "3", "-c", "16", "--temperature", "0", "-t", "2")
    assert rc == 0 and "context limit" not in err, err
    model = runtime.load(gguf, threads=2)
    list(model.generate("hi", max_tokens=100, temperature=0, ctx=16))
    assert model.last_stats.stop_reason == "ctx"
    list(model.generate("hi", max_tokens=3, temperature=0, ctx=16))
    assert model.last_stats.stop_reason in ("max_tokens", "eos")
