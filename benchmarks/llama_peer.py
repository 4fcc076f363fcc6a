"""The llama.cpp peer of the benchmarks (llama-cpp-python), loaded the way it was built, plus this CPU's SIMD.

``native``: the build of benchmarks/build_native_peer.sh in .cache/llama-native/ (-DGGML_NATIVE=ON, what
llama.cpp users run), put first on sys.path; ``portable``: whatever ``import llama_cpp`` finds (the
AVX2-only build scripts/setup.sh installs for the tests).  Does not build anything itself.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[1]
NATIVE_DIR = ROOT / ".cache" / "llama-native"
STAMP = NATIVE_DIR / "build-stamp.json"
BUILD_SCRIPT = "benchmarks/build_native_peer.sh"
# the x86 extensions that decide which ggml kernels a native build compiles in
SIMD_FLAGS = ("avx2", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx512vbmi")


def load_llama_cpp(kind: str) -> tuple[ModuleType, dict]:
    """Import llama_cpp from the ``kind`` build; the module and a description of it (version, path,
    CMAKE_ARGS, the ggml CPU features from llama_print_system_info).  Exits with a one-line error when
    the native build is missing, or when llama_cpp was already imported from elsewhere."""
    if kind not in ("native", "portable"):
        raise ValueError(f"peer kind {kind!r}: expected 'native' or 'portable'")
    stamp: dict = {}
    if kind == "native":
        if not STAMP.is_file():
            sys.exit(
                f"no native llama.cpp peer in {NATIVE_DIR}: build it with `bash {BUILD_SCRIPT}` (~10 min), "
                f"or pass --peer portable"
            )
        stamp = json.loads(STAMP.read_text())
        if "llama_cpp" in sys.modules:
            sys.exit("llama_cpp was imported before the native peer could be put first on sys.path")
        sys.path.insert(0, str(NATIVE_DIR))
    try:
        import llama_cpp
    except ImportError as e:
        sys.exit(f"llama-cpp-python ({kind} peer) is not importable: {e}")
    where = Path(llama_cpp.__file__).resolve().parent
    if kind == "native" and NATIVE_DIR.resolve() not in where.parents:
        sys.exit(f"llama_cpp came from {where}, not from {NATIVE_DIR}")
    if kind == "portable" and NATIVE_DIR.resolve() in where.parents:
        sys.exit(f"--peer portable, but llama_cpp came from {where} (remove it from PYTHONPATH)")
    info = {
        "kind": kind,
        "version": llama_cpp.__version__,
        "path": str(where),
        # the portable build records no flags; scripts/setup.sh builds it with -DGGML_NATIVE=OFF
        "cmake_args": stamp.get("cmake_args", "not recorded (scripts/setup.sh: -DGGML_NATIVE=OFF)"),
        "system_info": llama_cpp.llama_print_system_info().decode(errors="replace").strip(),
    }
    return llama_cpp, info


def cpu_simd() -> dict:
    """This CPU's model name and, for each flag of SIMD_FLAGS, whether /proc/cpuinfo lists it."""
    model, flags = "unknown", set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, val = line.partition(":")
            if key.strip() == "model name" and model == "unknown":
                model = val.strip()
            elif key.strip() == "flags" and not flags:
                flags = set(val.split())
    except OSError:
        pass
    return {"model": model, "flags": {f: f in flags for f in SIMD_FLAGS}}


def describe(peer: dict, cpu: dict) -> str:
    """Two lines for a benchmark's header: the peer's build and this CPU's SIMD."""
    have = " ".join(f for f, on in cpu["flags"].items() if on)
    lack = " ".join(f for f, on in cpu["flags"].items() if not on)
    return (
        f"peer: llama-cpp-python {peer['version']} ({peer['kind']} build, CMAKE_ARGS {peer['cmake_args']}) "
        f"from {peer['path']}; ggml: {peer['system_info']}\n"
        f"CPU: {cpu['model']}; SIMD: {have}" + (f" (lacks {lack})" if lack else "")
    )
