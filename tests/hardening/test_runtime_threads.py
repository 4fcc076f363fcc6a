"""Race detection for concurrent sessions on one model (issue 11): tsan_driver.cpp and the whole runtime
core built with ThreadSanitizer; 3 threads, each with its own session (two-chunk prefill, save -> restore,
decode), run at once on one Runtime with a 2-thread pool.  Passes only with no TSan report, no hang and
every logit bit-equal to the sequential run.  (The pool before concurrent callers were allowed produced
data-race reports and deadlocked on exactly this run.)  The build is cached (runtime_support.build_driver).
"""

from __future__ import annotations

import subprocess

import pytest
from hardening.runtime_support import build_driver, run_driver, sanitizer_problem, tiny_gguf

TSAN = ["-fsanitize=thread"]


@pytest.fixture(scope="module")
def driver():
    why = sanitizer_problem(TSAN)
    if why:
        pytest.skip(f"ThreadSanitizer unavailable: {why}")
    return build_driver("tsan", TSAN, opt="-O0")


@pytest.fixture(scope="module")
def gguf(tmp_path_factory):
    return tiny_gguf(tmp_path_factory.mktemp("rt_tsan") / "a.gguf", variant="Q8_0")


def test_concurrent_sessions_under_tsan(driver, gguf, tmp_path):
    try:
        r = run_driver(driver, [str(gguf), "3", "12", "3", "2", "1", str(tmp_path)], timeout=240)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the driver hung (deadlock?): {(e.stderr or b'')[-3000:]!r}")
    assert "ThreadSanitizer" not in r.stderr, r.stderr[-6000:]
    assert r.returncode == 0, r.stderr[-3000:]
    # 3 sessions x (6 first-chunk rows + 1 second-chunk row + 3 decodes) x 1024, all compared bit for bit
    assert r.stdout.strip() == "OK sessions=3 rounds=1 prefill=12 decode=3 pool=2 logits_compared=30720", r.stdout


def test_driver_comparison_can_fail(driver, gguf, tmp_path):
    """One threaded logit changed by the driver (DSV4_DRIVER_PERTURB) must be reported as a difference."""
    r = run_driver(
        driver, [str(gguf), "2", "4", "1", "1", "1", str(tmp_path)], timeout=120, env={"DSV4_DRIVER_PERTURB": "1"}
    )
    assert r.returncode == 1 and "round 0 session 1 call 2: logits differ from the sequential run" in r.stderr, r.stderr
    r = run_driver(driver, [str(gguf)], timeout=60)
    assert r.returncode == 2 and "usage:" in r.stderr
