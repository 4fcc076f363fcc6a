#!/usr/bin/env bash
# Build the benchmark peer the way llama.cpp users build it: llama-cpp-python from source with
# -DGGML_NATIVE=ON (-march=native: every SIMD extension of this CPU), into .cache/llama-native/.
# benchmarks/runtime.py loads it from there; the portable AVX2 build that scripts/setup.sh installs
# for the tests is left alone.  Skipped when the folder already holds a build with the same version,
# CMake flags and CPU (stamp file); --force rebuilds.  ~10 min on 2 cores.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VERSION=0.3.36
FLAGS="-DGGML_NATIVE=ON"
DEST=.cache/llama-native
STAMP="$DEST/build-stamp.json"

# -march=native depends on the CPU, so the stamp records it: a cache copied to another machine rebuilds.
CPU_MODEL=$(grep -m1 '^model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
CPU_FLAGS=$(grep -m1 '^flags' /proc/cpuinfo | cut -d: -f2- | tr ' ' '\n' | grep -E '^(avx|fma|f16c|amx)' | sort | tr '\n' ' ')
WANT=$("$PY" -c 'import json, sys; print(json.dumps({"package": "llama-cpp-python", "version": sys.argv[1],
  "cmake_args": sys.argv[2], "cpu_model": sys.argv[3], "cpu_flags": sys.argv[4].split()}, sort_keys=True))' \
  "$VERSION" "$FLAGS" "$CPU_MODEL" "$CPU_FLAGS")

if [ "${1:-}" != "--force" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
  echo "native peer already built in $DEST ($VERSION, CMAKE_ARGS=$FLAGS); --force rebuilds"
  exit 0
fi

# Build into a side folder and rename at the end: the final path never holds a half-built peer.
# --no-binary: compile from the sdist; --no-cache-dir: pip must not reuse the portable wheel that
# setup.sh left in its wheel cache (same name and version, other flags); --no-deps: numpy etc. come from
# the environment.
TMP="$DEST.partial"
rm -rf "$TMP"
mkdir -p "$(dirname "$DEST")"
echo "building llama-cpp-python $VERSION with CMAKE_ARGS=$FLAGS into $DEST (~10 min on 2 cores)"
t0=$(date +%s)
CMAKE_ARGS="$FLAGS" "$PY" -m pip install --target "$TMP" --no-deps --no-cache-dir \
  --no-binary llama-cpp-python --disable-pip-version-check "llama-cpp-python==$VERSION"
# What the build actually enabled: the ggml CPU features of the freshly built library.
INFO=$(PYTHONPATH="$TMP" "$PY" -c 'import llama_cpp; print(llama_cpp.llama_print_system_info().decode())')
echo "built in $(( $(date +%s) - t0 )) s: $INFO"
case "$INFO" in
  *"AVX512 = 1"*) ;;
  *) if grep -qw avx512f /proc/cpuinfo; then
       echo "error: this CPU has AVX-512 but the native build does not report it ($INFO)" >&2
       exit 1
     fi ;;
esac
printf '%s\n' "$WANT" > "$TMP/build-stamp.json"
rm -rf "$DEST"
mv "$TMP" "$DEST"
echo "native peer ready in $DEST"
