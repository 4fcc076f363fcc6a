"""The shipped calibration corpus is current with its source, under 200 KB, and covers both think modes."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_calibration_corpus_is_current_and_small():
    r = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "build_calibration.py"), "--check"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    text = (ROOT / "quantize" / "calibration" / "calibration.txt").read_text(encoding="utf-8")
    assert len(text.encode()) < 200_000
    assert "<｜Assistant｜></think>" in text and "<｜Assistant｜><think>" in text  # non-think and think
    assert "<｜begin▁of▁sentence｜>" not in text  # chunks get their BOS from `dsv4-gguf imatrix`
