"""The runtime core under AddressSanitizer + UBSan (issue 11): tsan_driver.cpp's concurrent-session run and
its `corrupt` mode, which loads 300 truncated, bit-flipped and header-forged copies of a saved FP8 session
state into a live session; each must be refused with StateError, the session must be unchanged and no
access may leave its buffer.  Built at -O0 to keep the (cached) build short on 2 cores."""

from __future__ import annotations

import subprocess

import pytest
from hardening.runtime_support import build_driver, run_driver, sanitizer_problem, tiny_gguf

ASAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined"]


@pytest.fixture(scope="module")
def driver():
    why = sanitizer_problem(ASAN)
    if why:
        pytest.skip(f"AddressSanitizer/UBSan unavailable: {why}")
    return build_driver("asan", ASAN, opt="-O0")


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return tiny_gguf(tmp_path_factory.mktemp("rt_asan") / "a.gguf", variant="Q4_K_M")


def _run(driver, args: list[str]) -> subprocess.CompletedProcess[str]:
    try:
        return run_driver(driver, args, timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the driver hung: {(e.stderr or b'')[-3000:]!r}")


def test_damaged_state_files_under_asan(driver, gguf, tmp_path):
    r = _run(driver, [str(gguf), "corrupt", str(tmp_path), "300"])
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-6000:]
    assert r.returncode == 0 and r.stdout.strip() == "OK corrupt refused=300", r.stdout + r.stderr[-3000:]


def test_concurrent_sessions_under_asan(driver, gguf, tmp_path):
    r = _run(driver, [str(gguf), "3", "16", "4", "2", "2", str(tmp_path)])
    assert "Sanitizer" not in r.stderr and "runtime error" not in r.stderr, r.stderr[-6000:]
    assert r.returncode == 0, r.stderr[-3000:]
    assert r.stdout.strip() == "OK sessions=3 rounds=2 prefill=16 decode=4 pool=2 logits_compared=79872", r.stdout
