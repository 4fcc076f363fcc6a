"""docs/eval.md's KLD table is what its quoted quick start prints today (benchmarks/eval_docs.py runs the
block verbatim in a fresh folder and compares; the kernels are bit-exact across SIMD levels and thread
counts, so the table is the same on every machine).  After a change that moves these numbers on purpose,
`python benchmarks/eval_docs.py --write` regenerates the table."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_eval_docs_kld_table_matches_its_commands(tmp_path: Path) -> None:
    assert shutil.which("dsv4-gguf"), "the dsv4-gguf command is not on PATH (pip install -e .)"
    r = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "eval_docs.py"), "--keep", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert r.returncode == 0 and "the table matches this run" in r.stdout, r.stdout[-3000:] + r.stderr[-3000:]
