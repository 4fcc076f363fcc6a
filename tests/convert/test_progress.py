"""The progress bars of convert and verify: on stderr only when it is a terminal, and a successful run ends at
100% with every byte and every tensor (headers and the MTP sidecar included)."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest
from dsv4_gguf.quantize.convert import convert, make_plan
from dsv4_gguf.quantize.recipes import load_recipe

from dsv4_gguf.checkpoint import Checkpoint
from dsv4_gguf.cli import main
from dsv4_gguf.gguf_io import GGUFFile


def _last_bar(err: str, desc: str) -> str:
    """The bar as tqdm last drew it (each redraw starts with a carriage return)."""
    bars = [s for s in re.split(r"[\r\n]", err) if s.startswith(desc)]
    assert bars, err
    return bars[-1]


def _n_tensors(*paths: Path) -> int:
    return sum(len(GGUFFile(p).tensors) for p in paths)


def test_convert_bar_ends_at_100_percent(tiny_ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out)]) == 0
    assert "convert SOURCE" not in capsys.readouterr().err  # stderr is not a terminal: no bar
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    out = tmp_path / "tty.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out)]) == 0
    bar = _last_bar(capsys.readouterr().err, "convert SOURCE:")
    n = _n_tensors(out, out.with_name("mtp-" + out.name))  # the sidecar's tensors count too
    done, total = re.search(r"\| *([\d.]+\w?)/([\d.]+\w?) \[", bar).groups()
    assert bar.startswith("convert SOURCE: 100%") and done == total, bar
    assert f"tensors {n}/{n} " in bar, bar


class Stop(Exception):
    pass


@pytest.mark.parametrize("stop_at", [None, 40, 170])  # a whole run; resumed inside the main file, the sidecar
def test_convert_progress_counts_every_byte_and_tensor(tiny_ckpt, tmp_path, stop_at):
    out = tmp_path / "tiny.gguf"
    with Checkpoint(tiny_ckpt) as ck:
        plan = make_plan(ck.args, load_recipe("SOURCE"), out, ckpt_dir=ck.path, name="tiny")
        if stop_at:
            seen: list[str] = []

            def stop(name: str) -> None:
                seen.append(name)
                if len(seen) == stop_at:
                    raise Stop

            with pytest.raises(Stop):
                convert(plan, ck, on_tensor=stop)
        calls: list[tuple[int, int, str]] = []
        paths = convert(plan, ck, resume=bool(stop_at), progress=lambda *a: calls.append(a))
    size = sum(p.stat().st_size for p in paths)
    assert sum(c[0] for c in calls) == plan.total_bytes == size
    done = [c[1] for c in calls]
    assert done == sorted(done) and done[-1] == len(plan.entries) == _n_tensors(*paths)


def test_verify_has_a_bar_on_a_terminal_only(tiny_ckpt, tmp_path, capsys, monkeypatch):
    out = tmp_path / "tiny.gguf"
    assert main(["convert", str(tiny_ckpt), "-o", str(out)]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--against", str(tiny_ckpt)]) == 0
    got = capsys.readouterr()
    assert got.err == "" and "bit-exact: " in got.out
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    assert main(["verify", str(out), "--against", str(tiny_ckpt)]) == 0
    got = capsys.readouterr()
    bar = _last_bar(got.err, "verify:")
    n = _n_tensors(out, out.with_name("mtp-" + out.name))
    assert bar.startswith("verify: 100%") and f"tensors {n}/{n} " in bar, bar
    assert f"bit-exact: {n}/{n} tensors" in got.out
