"""Must-show: a real `eval kld` run on the runtime, killed with SIGKILL mid-way and rerun, writes the
same results.json as an uninterrupted run."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from dsv4_gguf.cli import main

pytestmark = pytest.mark.slow


def test_killed_run_resumes_to_identical_results(tiny_ggufs: dict[str, Path], tmp_path: Path) -> None:
    """`eval kld` on the runtime killed with SIGKILL after its first finished chunk, then rerun: the same
    results.json as an uninterrupted run (the reference cache is shared, as across variants)."""
    import os
    import random
    import signal
    import subprocess
    import sys
    import time

    words = "the a tapir walks under tree at dawn and dusk river forest eats leaves".split()
    text = tmp_path / "t.txt"
    text.write_text(" ".join(random.Random(1).choice(words) for _ in range(450)), encoding="utf-8")

    def args(out: Path) -> list[str]:
        return [
            "eval",
            "kld",
            "--data",
            str(text),
            "--model",
            str(tiny_ggufs["Q4_K_M"]),
            "--ref",
            str(tiny_ggufs["SOURCE"]),
            "--backend",
            "runtime",
            "--ref-cache",
            str(tmp_path / "ref"),
            "--out",
            str(out),
            "--ctx",
            "64",
            "--n-ctx",
            "64",
            "--threads",
            "2",
            "--variant",
            "q4",
        ]

    assert main(args(tmp_path / "whole")) == 0
    whole = json.loads((tmp_path / "whole" / "results.json").read_text())
    n_chunks = json.loads((tmp_path / "whole" / "manifest.json").read_text())["settings"]["n_chunks"]
    assert n_chunks >= 6

    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        [sys.executable, "-m", "dsv4_gguf.cli", *args(killed)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    items = killed / "items.jsonl"
    deadline = time.monotonic() + 120
    while proc.poll() is None and time.monotonic() < deadline:
        if items.exists() and items.read_text().count("\n") >= 1:
            os.kill(proc.pid, signal.SIGKILL)
            break
        time.sleep(0.005)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (killed / "results.json").exists()
    assert 1 <= items.read_text().count("\n") < n_chunks
    assert main(args(killed)) == 0
    assert json.loads((killed / "results.json").read_text()) == whole
