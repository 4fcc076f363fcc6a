"""Builds and runs tests/chat/jinja_driver.cpp: llama.cpp's own C++ Jinja engine (common/jinja, the one
llama-server --jinja, llama-cli and every llama.cpp app renders chat templates with), compiled unmodified from
llama.cpp's source tree with g++.  The binary is cached in build/llama-jinja/<hash of compiler, flags and
sources>/ so a rerun compiles nothing.  Nothing here links ggml or llama-cpp-python.

The tree is $DSV4_LLAMA_CPP_SRC, else the one scripts/setup.sh unpacks from the llama-cpp-python sdist.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DRIVER = Path(__file__).resolve().with_name("jinja_driver.cpp")
DEFAULT_SRC = ROOT / ".cache" / "llama-cpp-src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
# The engine and the two common/ files it needs (common_json over nlohmann, UTF-8 decoding).
SOURCES = (
    "common/jinja/caps.cpp",
    "common/jinja/lexer.cpp",
    "common/jinja/parser.cpp",
    "common/jinja/runtime.cpp",
    "common/jinja/string.cpp",
    "common/jinja/value.cpp",
    "common/json.cpp",
    "common/unicode.cpp",
)
FLAGS = ["-std=c++17", "-O1"]


class Unavailable(RuntimeError):
    """The llama.cpp tree or a C++ compiler is missing (a skip; under CI the policy of tests/conftest.py fails it)."""


class BuildError(RuntimeError):
    pass


def llama_cpp_src() -> Path:
    env = os.environ.get("DSV4_LLAMA_CPP_SRC")
    src = Path(env) if env else DEFAULT_SRC
    if not (src / "common" / "jinja" / "runtime.cpp").is_file():
        origin = "$DSV4_LLAMA_CPP_SRC" if env else "the default path (scripts/setup.sh unpacks it there)"
        raise Unavailable(
            f"{src}: no llama.cpp tree with common/jinja/runtime.cpp ({origin}); run "
            "scripts/setup.sh or set DSV4_LLAMA_CPP_SRC to vendor/llama.cpp of the llama-cpp-python "
            "0.3.36 sdist"
        )
    return src


def build(jobs: int = 2) -> Path:
    """The driver binary for the current tree; compiled (8 files + driver, ~1-2 min on 2 cores) only once."""
    src = llama_cpp_src()
    wanted = os.environ.get("CXX") or "g++"
    cxx = shutil.which(wanted)
    if cxx is None:
        origin = "$CXX" if os.environ.get("CXX") else "PATH, $CXX unset"
        raise Unavailable(f"no C++ compiler: {wanted!r} not found ({origin}; Debian: apt-get install g++)")
    version = subprocess.run([cxx, "--version"], capture_output=True, text=True).stdout
    h = hashlib.sha256(f"{version} {FLAGS}".encode())
    headers = sorted((src / "common" / "jinja").glob("*.h")) + [src / "common" / "json.h", src / "common" / "unicode.h"]
    for p in [*(src / s for s in SOURCES), *headers, DRIVER]:
        h.update(p.name.encode() + p.read_bytes())
    out = ROOT / "build" / "llama-jinja" / h.hexdigest()[:16]
    binary = out / "jinja_driver"
    if binary.is_file():
        return binary
    out.mkdir(parents=True, exist_ok=True)
    includes = [f"-I{src / 'common'}", f"-I{src / 'ggml' / 'include'}", f"-I{src / 'vendor'}"]
    work = [(src / s, out / (s.replace("/", "_") + ".o")) for s in SOURCES] + [(DRIVER, out / "jinja_driver.o")]

    def compile_one(w: tuple[Path, Path]) -> None:
        cmd = [cxx, *FLAGS, *includes, "-c", str(w[0]), "-o", str(w[1])]
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            raise BuildError(f"{' '.join(cmd)}\n{r.stderr[-4000:]}")

    with ThreadPoolExecutor(jobs) as ex:
        list(ex.map(compile_one, work))
    tmp = out / "jinja_driver.tmp"
    cmd = [cxx, *[str(o) for _, o in work], "-o", str(tmp)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode:
        raise BuildError(f"{' '.join(cmd)}\n{r.stderr[-4000:]}")
    tmp.replace(binary)  # atomic: an interrupted build never leaves a binary at the final path
    return binary


def render(binary: Path, template: str, cases: list[dict]) -> dict:
    """{"caps": {...}, "results": [{"out": str} | {"error": str}]}: one driver run over all `cases`."""
    with tempfile.TemporaryDirectory() as d:
        tpl, ctx = Path(d) / "template.jinja", Path(d) / "cases.json"
        tpl.write_text(template, encoding="utf-8")
        ctx.write_text(json.dumps(cases, ensure_ascii=False), encoding="utf-8")
        r = subprocess.run([str(binary), str(tpl), str(ctx)], capture_output=True, timeout=300)
    if r.returncode:
        raise RuntimeError(f"{binary} exited {r.returncode}: {r.stderr.decode(errors='replace')[-4000:]}")
    return json.loads(r.stdout.decode("utf-8"))
