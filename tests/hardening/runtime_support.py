"""Support of the runtime hardening tests (test_runtime_*.py): tiny deepseek4 GGUFs converted from seeded
``random_weights`` checkpoints, the session-state checksum re-implemented from its definition (to forge header
edits the loader must catch by validation, not by the checksum), and a sanitizer build of the runtime core with
tsan_driver.cpp.

The build compiles every source of csrc/core, csrc/quant, csrc/runtime and csrc/runtime/ops_cpu (the
libdsv4 core minus CUDA) with the flags of csrc/CMakeLists.txt plus a sanitizer, cached in
build/sanitize/<name>-<hash of compiler, flags, sources and headers>/ so a rerun links nothing.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import struct
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CSRC = ROOT / "csrc"
DRIVER = Path(__file__).resolve().with_name("tsan_driver.cpp")
CORE_DIRS = ("core", "quant", "runtime", "runtime/ops_cpu")
# ASan: leak checking needs ptrace (often forbidden in containers) and is not what these tests check.
SAN_ENV = {
    "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=1",
    "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1",
    "TSAN_OPTIONS": "halt_on_error=1:exitcode=66:second_deadlock_stack=1",
}

# session state file v2 (csrc/runtime/session.cpp): magic, u32 version, u32 0, u64 fingerprint, 13 x i64, u64 payload
HEADER_FIELDS = (
    "vocab",
    "dim",
    "n_layers",
    "head_dim",
    "idx_dim",
    "window",
    "kv_dtype",
    "ctx",
    "pos",
    "mtp",
    "qat",
    "exact",
    "mtp_pos",
)
HEADER_BYTES = 8 + 4 + 4 + 8 + 8 * len(HEADER_FIELDS) + 8
_FNV_BASIS, _FNV_PRIME, _M64 = 0xCBF29CE484222325, 0x100000001B3, (1 << 64) - 1


def tiny_gguf(path: Path, seed: int = 0, vocab: int = 1024, variant: str = "Q8_0") -> Path:
    """The tiny preset (SWA, HCA, CSA and hash layers) with `vocab` tokens: ``random_weights(args, seed)`` as a
    release-format checkpoint (written next to `path`) converted by the converter with the `variant` recipe."""
    if path.is_file():
        return path
    from support import small_model

    ckpt = small_model.write_checkpoint(small_model.small_args(vocab), path.with_name(path.stem + ".ckpt"), seed)
    return small_model.convert(ckpt, path, variant)


def _fnv1a(h: int, data: bytes) -> int:
    for b in data:
        h = ((h ^ b) * _FNV_PRIME) & _M64
    return h


def state_checksum(body: bytes) -> int:
    """The state file's checksum of `body` (every byte before it): four FNV-1a lanes over 8-byte words, the
    tail zero-padded to a whole 32-byte block (always one final block), folded with FNV-1a with the byte count."""
    n = len(body)
    padded = body + b"\0" * (32 - n % 32)
    words = np.frombuffer(padded, dtype="<u8").reshape(-1, 4)
    lanes = [_FNV_BASIS, _FNV_BASIS ^ 1, _FNV_BASIS ^ 2, _FNV_BASIS ^ 3]
    for row in words.tolist():
        lanes = [((lane ^ w) * _FNV_PRIME) & _M64 for lane, w in zip(lanes, row, strict=True)]
    h = _FNV_BASIS
    for lane in lanes:
        h = _fnv1a(h, struct.pack("<Q", lane))
    return _fnv1a(h, struct.pack("<Q", n))


def read_header(data: bytes) -> dict[str, int]:
    fields = struct.unpack_from(f"<{len(HEADER_FIELDS)}q", data, 24)
    return {
        "version": struct.unpack_from("<I", data, 8)[0],
        "fingerprint": struct.unpack_from("<Q", data, 16)[0],
        **dict(zip(HEADER_FIELDS, fields, strict=True)),
        "payload": struct.unpack_from("<Q", data, HEADER_BYTES - 8)[0],
    }


def forge(data: bytes, **fields: int) -> bytes:
    """A copy of a state file with header fields replaced and the checksum recomputed."""
    b = bytearray(data[:-8])
    for name, value in fields.items():
        if name == "version":
            struct.pack_into("<I", b, 8, value)
        elif name == "fingerprint":
            struct.pack_into("<Q", b, 16, value)
        elif name == "payload":
            struct.pack_into("<Q", b, HEADER_BYTES - 8, value)
        else:
            struct.pack_into("<q", b, 24 + 8 * HEADER_FIELDS.index(name), value)
    return bytes(b) + struct.pack("<Q", state_checksum(bytes(b)))


# ---------------------------------------------------------------------------------------------------
# sanitizer build of the runtime core + driver


class BuildError(RuntimeError):
    pass


def sanitizer_problem(flags: list[str]) -> str | None:
    """Why a `g++ <flags>` program cannot be built and run here, or None when it can."""
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        return "no g++ found"
    exe = ROOT / "build" / "sanitize" / f"probe-{hashlib.sha256(' '.join(flags).encode()).hexdigest()[:12]}"
    exe.parent.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(
        [cxx, "-x", "c++", *flags, "-pthread", "-o", str(exe), "-"],
        capture_output=True,
        text=True,
        input="#include <thread>\nint main() { std::thread t([] {}); t.join(); return 0; }\n",
    )
    if r.returncode:
        return f"{cxx} {' '.join(flags)} does not link: {r.stderr.strip()[-300:]}"
    r = subprocess.run([str(exe)], capture_output=True, text=True, env={**os.environ, **SAN_ENV})
    if r.returncode:
        return f"a {' '.join(flags)} program does not run here: {r.stderr.strip()[-300:]}"
    return None


def _flags_for(rel: str) -> list[str]:
    x86 = platform.machine().lower() in ("x86_64", "amd64")
    f = ["-DDSV4_X86=1"] if x86 else []
    if x86 and "avx2" in rel:
        f += ["-mavx2", "-mfma", "-mf16c"]
    if x86 and "avx512" in rel:  # the AVX-512 level's files (F, BW, DQ, VL, VNNI), as csrc/CMakeLists.txt
        f += ["-mavx2", "-mfma", "-mf16c", "-mavx512f", "-mavx512bw", "-mavx512dq", "-mavx512vl", "-mavx512vnni"]
    f.append("-ffp-contract=off")  # as csrc/CMakeLists.txt: no FMA contraction anywhere in the core
    return f


def _for_this_arch(name: str) -> bool:
    """As csrc/CMakeLists.txt: the AVX2 / AVX-512 files only on x86-64, the NEON files only on aarch64."""
    machine = platform.machine().lower()
    if "neon" in name:
        return machine in ("aarch64", "arm64")
    if "avx" in name:
        return machine in ("x86_64", "amd64")
    return True


def build_driver(name: str, san: list[str], opt: str = "-O1", jobs: int = 2) -> Path:
    """tsan_driver.cpp linked with the runtime core, every file compiled with `san`; cached by content."""
    cxx = os.environ.get("CXX") or shutil.which("g++")
    if cxx is None:
        raise BuildError("no g++ found")
    sources = sorted(
        str(p.relative_to(CSRC)) for d in CORE_DIRS for p in (CSRC / d).glob("*.cpp") if _for_this_arch(p.name)
    )
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(f"{version} {san} {opt}".encode())
    for d in CORE_DIRS:
        for p in sorted((CSRC / d).iterdir()):
            if p.suffix in (".cpp", ".h", ".inc"):
                h.update(str(p.relative_to(CSRC)).encode() + p.read_bytes())
    h.update(DRIVER.read_bytes())
    out = ROOT / "build" / "sanitize" / f"{name}-{h.hexdigest()[:16]}"
    binary = out / "driver"
    if binary.is_file():
        return binary
    out.mkdir(parents=True, exist_ok=True)
    work = [(CSRC / s, out / (s.replace("/", "_") + ".o"), _flags_for(s)) for s in sources]
    work.append((DRIVER, out / "driver.o", _flags_for("driver")))

    def compile_one(w: tuple[Path, Path, list[str]]) -> None:
        src, obj, extra = w
        cmd = [
            cxx,
            "-std=c++17",
            opt,
            "-g",
            "-fno-omit-frame-pointer",
            "-pthread",
            f"-I{CSRC}",
            *san,
            *extra,
            "-c",
            str(src),
            "-o",
            str(obj),
        ]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise BuildError(f"{' '.join(cmd)}\n{r.stderr[-4000:]}")

    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(compile_one, work))
    tmp = out / "driver.tmp"
    cmd = [cxx, *san, "-pthread", *[str(o) for _, o, _ in work], "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise BuildError(f"{' '.join(cmd)}\n{r.stderr[-4000:]}")
    tmp.replace(binary)
    return binary


def run_driver(
    binary: Path, args: list[str], timeout: float, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """Run the driver with the sanitizer settings; a hang (a deadlocked pool, say) is a TimeoutExpired."""
    return subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **SAN_ENV, **(env or {})},
    )
