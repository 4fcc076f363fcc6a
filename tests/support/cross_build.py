"""Builds of the C++ core + tests/arch/digest_driver.cpp for the cross-architecture check (tests/arch/).

Both builds go through the project's own CMake tree (tests/arch/CMakeLists.txt adds the repository's root
CMakeLists.txt): ``native`` with the host compiler, ``aarch64`` with Debian's ``aarch64-linux-gnu-g++`` (a static
driver, run under ``qemu-aarch64``), so the source gating and the flags under test are the wheel's.  Release, as
the wheel.  Each build lands in build/arch/<target>-<hash of compiler, sources and build files>/, so a rerun with
nothing changed links nothing.  The aarch64 tree can also build the ``_C`` module (a compile-and-link check: it
is built against this interpreter's CPython headers, whose pyconfig.h is the host's, the same LP64 data model).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
ARCH = ROOT / "tests" / "arch"
CROSS_CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
# the variables that choose a kernel level (or qemu's CPU model): only what a test passes reaches the driver
KERNEL_ENV = ("DSV4_KERNELS", "DSV4_FORCE_REF", "DSV4_FORCE_AVX2", "QEMU_CPU")
INSTALL_HINT = "apt-get install -y g++-aarch64-linux-gnu qemu-user (scripts/setup.sh does this as root)"
TOOLCHAIN = """set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_CXX_COMPILER {cxx})
"""


class BuildError(RuntimeError):
    pass


def missing_tools() -> str | None:
    """What the aarch64 check lacks here (cmake, the cross compiler, qemu), or None."""
    need = ["cmake", CROSS_CXX, QEMU]
    lacking = [t for t in need if shutil.which(t) is None]
    return f"{', '.join(lacking)} not found; {INSTALL_HINT}" if lacking else None


def _cxx(target: str) -> str:
    cxx = CROSS_CXX if target == "aarch64" else os.environ.get("CXX") or "c++"
    path = shutil.which(cxx)
    if path is None:
        raise BuildError(f"{cxx} not found; {INSTALL_HINT}")
    return path


def _key(target: str, cxx: str) -> str:
    h = hashlib.sha256(target.encode())
    h.update(subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout.encode())
    files = [ROOT / "CMakeLists.txt", ARCH / "CMakeLists.txt", ARCH / "digest_driver.cpp"]
    files += sorted(p for p in (ROOT / "csrc").rglob("*") if p.suffix in (".cpp", ".h", ".inc", ".txt"))
    for p in files:
        h.update(str(p.relative_to(ROOT)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()[:16]


def _run(cmd: list[str], cwd: Path) -> None:
    r = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    if r.returncode:
        raise BuildError(f"{' '.join(cmd)}\n{(r.stdout + r.stderr)[-6000:]}")


def build(target: str, targets: tuple[str, ...] = ("digest_driver",), jobs: int = 2) -> Path:
    """The build directory of `target` ("native" or "aarch64") with `targets` built (digest_driver, _C)."""
    cxx = _cxx(target)
    out = ROOT / "build" / "arch" / f"{target}-{_key(target, cxx)}"
    stamp = out / f"built-{'-'.join(targets)}"
    if stamp.is_file():
        return out
    out.mkdir(parents=True, exist_ok=True)
    import pybind11  # the build requirement pyproject.toml names; the _C target needs its CMake package

    args = [
        "cmake",
        "-S",
        str(ARCH),
        "-B",
        str(out),
        f"-DDSV4_ROOT={ROOT}",
        f"-Dpybind11_DIR={pybind11.get_cmake_dir()}",
        f"-DPython_EXECUTABLE={sys.executable}",
        f"-DCMAKE_CXX_COMPILER={cxx}",
    ]
    if shutil.which("ninja"):
        args += ["-G", "Ninja"]
    if target == "aarch64":
        tc = out / "aarch64.cmake"
        tc.write_text(TOOLCHAIN.format(cxx=cxx))
        # FindPython does not ask a host interpreter for a cross build's headers: name them
        args += [f"-DCMAKE_TOOLCHAIN_FILE={tc}", f"-DPython_INCLUDE_DIR={sysconfig.get_paths()['include']}"]
        args += ["-DDSV4_STATIC=ON"]
    _run(args, out)
    _run(["cmake", "--build", str(out), "-j", str(jobs), "--target", *targets], out)
    stamp.write_text("")
    return out


def elf_machine(path: Path) -> tuple[int, int]:
    """(e_type, e_machine) of an ELF file: e_type 2 = executable, 3 = shared object; e_machine 62 = x86-64,
    183 = aarch64."""
    head = path.read_bytes()[:20]
    if head[:4] != b"\x7fELF":
        raise BuildError(f"{path} is not an ELF file")
    return int.from_bytes(head[16:18], "little"), int.from_bytes(head[18:20], "little")


def run_driver(build_dir: Path, target: str, args: list[str], env: dict[str, str] | None = None, timeout: float = 300):
    """Run the driver of a build (under qemu-aarch64 for aarch64; env QEMU_CPU picks its CPU model); returns the
    CompletedProcess."""
    exe = [str(build_dir / "digest_driver")]
    if target == "aarch64":
        exe = [QEMU, *exe]
    clean = {k: v for k, v in os.environ.items() if k not in KERNEL_ENV}
    return subprocess.run([*exe, *args], capture_output=True, text=True, timeout=timeout, env={**clean, **(env or {})})
