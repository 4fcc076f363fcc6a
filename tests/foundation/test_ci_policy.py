"""The CI skip policy (tests/ci_policy.py, applied by tests/conftest.py) against a deliberately broken peer install:
pytest runs in a subprocess on generated modules that need llama_cpp, with a ``llama_cpp`` package first on
PYTHONPATH whose import fails as a missing module does (what ``importorskip`` skips on).  Under CI the run fails
and names the test and the import error; without CI it passes with the skips; a no-CUDA-device skip passes under
CI.  The subprocess loads tests/conftest.py as a plugin (``-p conftest``), the hooks the suite runs under.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from ci_policy import NO_CUDA_DEVICE, allowed_under_ci, ci_enabled

TESTS = Path(__file__).resolve().parents[1]
BROKEN = "No module named 'llama_cpp' (deliberately broken peer)"

MODULE_SKIP = """
import pytest

llama_cpp = pytest.importorskip("llama_cpp")


def test_module_level():
    assert llama_cpp
"""

BODY_SKIP = """
import pytest
from ci_policy import NO_CUDA_DEVICE


def test_in_body():
    pytest.importorskip("llama_cpp")


def test_no_device():
    pytest.skip(f"{NO_CUDA_DEVICE} stand-in for a machine without a GPU")


def test_runs():
    pass
"""


@pytest.fixture(scope="module")
def run_pytest(tmp_path_factory):
    root = tmp_path_factory.mktemp("ci_policy")
    (root / "site" / "llama_cpp").mkdir(parents=True)
    (root / "site" / "llama_cpp" / "__init__.py").write_text(f"raise ModuleNotFoundError({BROKEN!r})\n")
    work = root / "work"
    work.mkdir()
    (work / "test_module_skip.py").write_text(MODULE_SKIP)
    (work / "test_body_skip.py").write_text(BODY_SKIP)

    def run(ci: str | None, *paths: str) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if k != "CI"}
        env["PYTHONPATH"] = os.pathsep.join([str(root / "site"), str(TESTS), env.get("PYTHONPATH", "")])
        if ci is not None:
            env["CI"] = ci
        cmd = [sys.executable, "-m", "pytest", "-p", "conftest", "-p", "no:cacheprovider", "-W", "error", "-rA", *paths]
        return subprocess.run(cmd, cwd=work, env=env, capture_output=True, text=True, timeout=120)

    return run


def test_without_ci_a_broken_peer_skips(run_pytest):
    r = run_pytest(None, ".")
    out = r.stdout + r.stderr
    assert r.returncode == 0, out
    assert "1 passed, 3 skipped" in out, out
    assert f"could not import 'llama_cpp': {BROKEN}" in out, out


def test_under_ci_a_skip_in_a_test_fails_and_names_it(run_pytest):
    r = run_pytest("true", "test_body_skip.py")
    out = r.stdout + r.stderr
    assert r.returncode == 1, out
    assert f"test_body_skip.py::test_in_body: skipped under CI (could not import 'llama_cpp': {BROKEN})" in out, out
    assert "1 failed, 1 passed, 1 skipped" in out, out  # the no-device skip stays a skip
    assert re.search(rf"SKIPPED \[1\] test_body_skip.py:\d+: {NO_CUDA_DEVICE} stand-in", out), out


def test_under_ci_a_module_skip_fails_collection(run_pytest):
    r = run_pytest("1", "test_module_skip.py")
    out = r.stdout + r.stderr
    assert r.returncode not in (0, 5), out
    assert f"test_module_skip.py: skipped under CI (could not import 'llama_cpp': {BROKEN})" in out, out
    assert "1 error" in out, out


@pytest.mark.parametrize(
    ("value", "on"),
    [
        (None, False),
        ("", False),
        ("0", False),
        ("false", False),
        ("False", False),
        ("no", False),
        (" NO ", False),
        ("true", True),
        ("1", True),
        ("yes", True),
        ("github-actions", True),
    ],
)
def test_ci_switch(value, on):
    assert ci_enabled({} if value is None else {"CI": value}) is on


def test_only_the_missing_device_is_accepted():
    assert allowed_under_ci(f"{NO_CUDA_DEVICE} the CUDA backend is built but no device is visible")
    assert not allowed_under_ci("could not import 'torch': No module named 'torch'")
    assert not allowed_under_ci("CUDA backend not compiled (no nvcc at build time, or configured with DSV4_CUDA=OFF)")


DISK_MODULE = """
def test_pass(tmp_path):
    (tmp_path / "big.bin").write_bytes(bytes(1 << 20))


def test_fail(tmp_path):
    (tmp_path / "big.bin").write_bytes(bytes(1 << 20))
    assert False, "kept for the post-mortem"
"""


def test_a_passing_tests_files_are_removed_when_it_ends(tmp_path):
    """The suite writes ~12 GB over a run; under the project's pytest settings (pyproject.toml) a passing test's
    tmp_path goes when the test ends, a failing one's stays for the post-mortem."""
    work = tmp_path / "work"
    work.mkdir()
    (work / "test_disk.py").write_text(DISK_MODULE)
    base = tmp_path / "base"
    cfg = TESTS.parent / "pyproject.toml"
    cmd = [sys.executable, "-m", "pytest", "-c", str(cfg), "--rootdir", str(work), "-p", "no:cacheprovider"]
    env = {k: v for k, v in os.environ.items() if k != "CI"}
    r = subprocess.run(
        [*cmd, f"--basetemp={base}", "test_disk.py"], cwd=work, env=env, capture_output=True, text=True, timeout=120
    )
    out = r.stdout + r.stderr
    assert "1 failed, 1 passed" in out, out
    assert not (base / "test_pass0").exists(), sorted(p.name for p in base.iterdir())
    assert (base / "test_fail0" / "big.bin").stat().st_size == 1 << 20
