"""The C++ GGUF loader's fuzz target (csrc/fuzz/gguf_loader_fuzz.cpp) under AddressSanitizer + UBSan.

Built with clang's libFuzzer when clang is installed, otherwise with the standalone random driver
(g++); the first build takes ~20-45 s, later runs reuse build/fuzz/<source hash>/.  A short run replays
the generated seed corpus and mutates it for a few seconds; the self-tests prove the sanitizers in the
binary do report (a checker that cannot fail is a defect).
"""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"  # fuzz.sh's modules (benchmarks never import tests/)


def _load(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


fuzz_build, fuzz_targets = _load("fuzz_build"), _load("fuzz_targets")


@pytest.fixture(scope="module")
def target():
    try:
        return fuzz_build.build(os.environ.get("DSV4_FUZZ_ENGINE", "auto"))  # CI without clang: standalone
    except fuzz_build.BuildError as e:  # a compiler error in csrc/ is a failure, not a skip
        pytest.fail(str(e))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    d = tmp_path_factory.mktemp("gguf_corpus")
    fuzz_targets.write_seeds("gguf", d)
    return d


def _run(binary, engine, corpus, *flags, env=None):
    args = [str(binary), *flags]
    if engine == "libfuzzer":
        args += ["-print_final_stats=1", f"-artifact_prefix={corpus.parent}/crash-"]
    # Started through a shell that forks it: Linux gives a process that pytest spawns directly the peak RSS of
    # pytest itself as its own starting ru_maxrss (exec keeps the high-water mark of the image it replaces), and
    # libFuzzer's -rss_limit_mb (2048) reads that figure, so in a long test session (pytest past 2 GB) the
    # fuzzer stopped with "out-of-memory" and an empty unit.  A forked child starts from the shell's few MB.
    return subprocess.run(
        ["sh", "-c", '"$@"; exit $?', "sh", *args, str(corpus)],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, **fuzz_build.SAN_ENV, **(env or {})},
        cwd=corpus.parent,
    )


def test_short_run_under_sanitizers(target, corpus):
    binary, engine = target
    flags = ["-runs=20000"] + (["-max_total_time=10", "-seed=1"] if engine == "libfuzzer" else ["-seed=1"])
    r = _run(binary, engine, corpus, *flags)
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    m = re.search(r"stat::number_of_executed_units: (\d+)|Done (\d+) runs", out)
    assert m and int(m.group(1) or m.group(2)) >= 1000, out[-3000:]


def test_peak_rss_is_the_fuzzers_own(target, corpus):
    """With this test process holding 2.2 GB, the fuzzer's peak RSS (what its -rss_limit_mb of 2048 checks) is
    still its own: the condition under which a full CI session's pytest made the short run fail."""
    binary, engine = target
    if engine != "libfuzzer":
        return  # the standalone driver has no RSS limit (and prints no peak)
    held = bytearray(2_200_000_000)
    held[:: 1 << 12] = b"\x01" * len(range(0, len(held), 1 << 12))  # touch every page: resident
    r = _run(binary, engine, corpus, "-runs=3000", "-seed=2", "-max_total_time=3")
    out = r.stdout + r.stderr
    del held
    assert r.returncode == 0, out[-3000:]
    m = re.search(r"stat::peak_rss_mb:\s+(\d+)", out)
    assert m and int(m.group(1)) < 1024, out[-3000:]


@pytest.mark.parametrize(
    "kind, report",
    [("asan", "AddressSanitizer: heap-buffer-overflow"), ("ubsan", "runtime error: signed integer overflow")],
)
def test_sanitizers_are_live(target, corpus, kind, report):
    binary, engine = target
    r = _run(binary, engine, corpus, "-runs=1", env={"DSV4_FUZZ_SELFTEST": kind})
    assert r.returncode != 0
    assert report in r.stdout + r.stderr
