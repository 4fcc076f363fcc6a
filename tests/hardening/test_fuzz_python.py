"""Short bounded runs of the Python parser fuzz targets (benchmarks/fuzz_targets.py), seconds each.

Coverage-guided through atheris when it is installed (the `test` extra), a plain random mutator
otherwise; long runs are benchmarks/fuzz.sh.  A selftest target proves a raw exception is reported.
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

# the fuzz targets live with benchmarks/fuzz.sh (which must not import from tests/); the tests load them from there
SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fuzz_targets.py"
_spec = importlib.util.spec_from_file_location("bench_fuzz_targets", SCRIPT)
ft = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = ft
_spec.loader.exec_module(ft)
RUNS, SECONDS = 20000, 4


def _fuzz(target: str, corpus: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # an atheris import warning must not fail the run
    return subprocess.run(
        [sys.executable, str(SCRIPT), target, "--corpus", str(corpus), *extra],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )


@pytest.mark.parametrize("target", ft.PARSERS)
def test_short_fuzz_run(tmp_path, target):
    r = _fuzz(target, tmp_path / "corpus", "--runs", str(RUNS), "--seconds", str(SECONDS))
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    executed = int(re.search(r"stat::number_of_executed_units: (\d+)", out).group(1))
    assert executed >= 500, out[-3000:]
    assert not list(tmp_path.glob("crash-*"))


@pytest.mark.parametrize("engine", ["atheris", "random"])
def test_a_raw_exception_is_a_crash(tmp_path, engine):
    if engine == "atheris":
        pytest.importorskip("atheris")
    r = _fuzz("selftest", tmp_path / "corpus", "--runs", "100", "--engine", engine)
    assert r.returncode != 0
    assert "IndexError: selftest crash" in r.stdout + r.stderr
    assert [p.read_bytes()[:4] for p in tmp_path.glob("crash-*")] == [b"boom"]


def test_seeds_are_valid_inputs(tmp_path):
    """The generated seed corpora start deep inside the parsers: the valid seeds parse without error."""
    from dsv4_gguf.quantize.imatrix import load_imatrix

    from dsv4_gguf.chat import parse_completion
    from dsv4_gguf.checkpoint import SafetensorsFile
    from dsv4_gguf.gguf_io import GGUFFile

    for i, b in enumerate(ft.safetensors_seeds()):
        (tmp_path / f"{i}.safetensors").write_bytes(b)
        assert SafetensorsFile(tmp_path / f"{i}.safetensors").keys() is not None
    for i, b in enumerate(ft.gguf_seeds()):
        (tmp_path / f"{i}.gguf").write_bytes(b)
        assert GGUFFile(tmp_path / f"{i}.gguf").metadata
    for i, b in enumerate(ft.imatrix_seeds()):
        (tmp_path / f"{i}.imatrix").write_bytes(b)
        assert load_imatrix(tmp_path / f"{i}.imatrix")
    ok = {}
    for b in ft.dsml_seeds():
        mode = ("chat", "thinking")[b[0] & 1]
        try:
            ok[b] = len(parse_completion(b[1:].decode(), mode, require_eos=not b[0] & 2)["tool_calls"])
        except ValueError:
            pass
    assert sorted(ok.values()) == [0, 0, 0, 0, 2, 2, 2], ok  # plain, thinking, tool-call turns, no EOS
