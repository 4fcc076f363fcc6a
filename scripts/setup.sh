#!/usr/bin/env bash
# Install dsv4-gguf and everything its tests need into the current Python (editable, C++ core built).
# Safe to re-run: pip skips what is already installed; the C++ core is rebuilt only when sources change.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
# Build requirements first: the editable install builds without isolation (offline-friendly, faster).
"$PY" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
# torch: the pinned CPU wheel (any other spec pulls a multi-GB CUDA build).
"$PY" -m pip install -q "torch==2.13.0"
# llama-cpp-python is the peer in tests and benchmarks; build it portable (pip's wheel cache keeps it).
CMAKE_ARGS="${CMAKE_ARGS:--DGGML_NATIVE=OFF}" "$PY" -m pip install -q "llama-cpp-python==0.3.36"
"$PY" -m pip install -q --no-build-isolation -e ".[test]"
# The peer's own llama.cpp source (the exact tree llama-cpp-python 0.3.36 bundles): tests compile
# llama.cpp's imatrix loader from it.  Fetched once from PyPI as the sdist, kept under .cache/.
LLAMA_SRC=.cache/llama-cpp-src
if [ ! -d "$LLAMA_SRC/llama_cpp_python-0.3.36/vendor/llama.cpp" ]; then
  mkdir -p "$LLAMA_SRC"
  "$PY" -m pip download -q --no-deps --no-build-isolation --no-binary llama-cpp-python \
    "llama-cpp-python==0.3.36" -d "$LLAMA_SRC"
  tar xzf "$LLAMA_SRC/llama_cpp_python-0.3.36.tar.gz" -C "$LLAMA_SRC"
fi
# The aarch64 cross compiler and qemu-user: tests/arch cross-builds the core for aarch64 and runs it under
# qemu-aarch64 against the x86 build's bits (Debian/Ubuntu package names; installed when root with apt-get).
if ! command -v aarch64-linux-gnu-g++ >/dev/null || ! command -v qemu-aarch64 >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null ||
      { apt-get update -qq && apt-get install -y -qq g++-aarch64-linux-gnu qemu-user >/dev/null; }
  else
    echo "setup: g++-aarch64-linux-gnu and qemu-user are missing (tests/arch needs them; install as root)" >&2
  fi
fi
"$PY" -c "import dsv4_gguf, json; print('dsv4-gguf', dsv4_gguf.__version__, json.dumps(dsv4_gguf.build_info()))"
