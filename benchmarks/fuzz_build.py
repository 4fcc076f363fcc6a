"""Builds the C++ GGUF-loader fuzz target (csrc/fuzz/) with AddressSanitizer + UBSan, cached by source hash.

Two engines: ``libfuzzer`` (clang++ -fsanitize=fuzzer: coverage-guided; benchmarks/fuzz.sh) and
``standalone`` (any compiler; csrc/fuzz/standalone_main.cpp replays a corpus and mutates it at random: the
in-suite run where clang is missing).  The loader and the harness are sanitized; the quant tables it needs
(``qtype_info``) are linked uninstrumented.  Binaries land in build/fuzz/<hash>/; nothing is installed.

``python benchmarks/fuzz_build.py [--engine auto|libfuzzer|standalone]`` prints the binary path.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CSRC = ROOT / "csrc"
# the loader's own dependencies (qtype_info lives in quant.cpp, whose kernel table needs the ref kernels)
SUPPORT = [
    "quant/quant.cpp",
    "quant/quant_basic_ref.cpp",
    "quant/quant_k_ref.cpp",
    "quant/quant_legacy_ref.cpp",
    "quant/dot_ref.cpp",
    "quant/tables.cpp",
    "quant/repack.cpp",
    "quant/iq3_ref.cpp",
    "quant/iq2s_tables.cpp",
    "quant/iq2s_ref.cpp",
    "quant/iq1_tables.cpp",
    "quant/iq1_ref.cpp",
    "core/cpu_features.cpp",
]
SANITIZED = ["runtime/gguf_file.cpp", "fuzz/gguf_loader_fuzz.cpp"]
SAN = ["-fsanitize=address,undefined", "-fno-sanitize-recover=undefined", "-fno-omit-frame-pointer"]
# ASan/UBSan settings for every run: abort with a report on the first error; leak checking off (it needs
# ptrace, which containers often forbid, and the loader's ownership is plain RAII).
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1:symbolize=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
}


class BuildError(RuntimeError):
    pass


def clang() -> str | None:
    """clang++ that can link -fsanitize=fuzzer (needs libclang-rt), or None."""
    for cxx in ("clang++", "clang++-14", "clang++-15", "clang++-16"):
        path = shutil.which(cxx)
        if path is None:
            continue
        probe = subprocess.run(
            [path, "-x", "c++", "-fsanitize=fuzzer,address", "-o", os.devnull, "-"],
            input=b'extern "C" int LLVMFuzzerTestOneInput(const char*, unsigned long) { return 0; }',
            capture_output=True,
        )
        if probe.returncode == 0:
            return path
    return None


def _compile(cxx: str, src: Path, obj: Path, flags: list[str]) -> None:
    cmd = [cxx, "-std=c++17", "-g", f"-I{CSRC}", *flags, "-c", str(src), "-o", str(obj)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise BuildError(f"{' '.join(cmd)}\n{r.stderr[-4000:]}")


def build(engine: str = "auto", jobs: int = 2) -> tuple[Path, str]:
    """(binary, engine) for the GGUF-loader target; rebuilt only when a source or the compiler changes."""
    cxx = clang()
    if engine == "auto":
        engine = "libfuzzer" if cxx else "standalone"
    if engine == "libfuzzer" and cxx is None:
        raise BuildError("clang++ with libFuzzer is not installed (Debian: apt-get install clang libclang-rt-14-dev)")
    if engine == "standalone":
        cxx = os.environ.get("CXX") or shutil.which("g++") or cxx
        if cxx is None:
            raise BuildError("no C++ compiler found (g++ or clang++)")
    assert cxx is not None
    sanitized = SANITIZED + (["fuzz/standalone_main.cpp"] if engine == "standalone" else [])
    link_san = [*SAN, "-fsanitize=fuzzer"] if engine == "libfuzzer" else SAN
    h = hashlib.sha256(f"{cxx} {engine} {SAN}".encode())
    for rel in sorted({*SUPPORT, *sanitized}) + ["runtime/gguf_file.h", "quant/qtypes.h", "quant/quant.h"]:
        h.update(rel.encode() + (CSRC / rel).read_bytes())
    out = ROOT / "build" / "fuzz" / h.hexdigest()[:16]
    binary = out / f"gguf_loader_fuzz_{engine}"
    if binary.is_file():
        return binary, engine
    out.mkdir(parents=True, exist_ok=True)
    fuzz_flag = ["-fsanitize=fuzzer-no-link"] if engine == "libfuzzer" else []
    work = [(CSRC / s, out / (s.replace("/", "_") + ".o"), ["-O1"]) for s in SUPPORT]
    work += [(CSRC / s, out / (s.replace("/", "_") + ".o"), ["-O1", *SAN, *fuzz_flag]) for s in sanitized]
    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(lambda w: _compile(cxx, *w), work))
    tmp = binary.with_suffix(".tmp")
    cmd = [cxx, *link_san, *[str(o) for _, o, _ in work], "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise BuildError(f"{' '.join(cmd)}\n{r.stderr[-4000:]}")
    tmp.replace(binary)
    return binary, engine


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--engine", choices=("auto", "libfuzzer", "standalone"), default="auto")
    ap.add_argument("--jobs", type=int, default=2)
    a = ap.parse_args(argv)
    binary, _ = build(a.engine, a.jobs)
    print(binary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
