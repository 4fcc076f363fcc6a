#!/usr/bin/env bash
# Runs every parser fuzz target for a set time and prints one markdown row per target (executions,
# crashes, coverage).  Python readers: atheris (benchmarks/fuzz_targets.py); the runtime's C++ GGUF
# loader: libFuzzer + AddressSanitizer + UBSan (csrc/fuzz/, built by benchmarks/fuzz_build.py).
# Corpora persist under $FUZZ_OUT (default build/fuzz-runs) so a second run resumes from the coverage
# already found; crashes land there as crash-* files and make the script exit 1.
#   benchmarks/fuzz.sh [SECONDS_PER_TARGET (default 120)] [TARGET ...]
# Installs clang + libclang-rt (apt, as root) and atheris (pip) when missing; it does not touch the suite.
set -uo pipefail
cd "$(dirname "$0")/.."
SECS="${1:-${FUZZ_SECONDS:-120}}"
shift || true
TARGETS=("$@")
[ ${#TARGETS[@]} -eq 0 ] && TARGETS=(safetensors index gguf imatrix dsml cpp-gguf)
OUT="${FUZZ_OUT:-build/fuzz-runs}"
PY="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:symbolize=1" UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"

if ! "$PY" -c "import atheris" 2>/dev/null; then
  "$PY" -m pip install -q "atheris==2.3.0" || echo "atheris unavailable: Python targets use the random mutator" >&2
fi
if [[ " ${TARGETS[*]} " == *" cpp-gguf "* ]] && ! "$PY" benchmarks/fuzz_build.py --engine libfuzzer >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    apt-get install -y -q clang libclang-rt-14-dev >/dev/null 2>&1 \
      || { apt-get update -q >/dev/null && apt-get install -y -q clang libclang-rt-14-dev >/dev/null; }
  fi
fi

mkdir -p "$OUT"
summary="$OUT/summary.md"
echo "| target | engine | seconds | executions | exec/s | crashes | coverage |" | tee "$summary"
echo "|---|---|---:|---:|---:|---:|---|" | tee -a "$summary"
status=0
for t in "${TARGETS[@]}"; do
  dir="$OUT/$t"
  mkdir -p "$dir/corpus"
  log="$dir/log.txt"
  start=$(date +%s)
  if [ "$t" = cpp-gguf ]; then
    engine=libfuzzer
    bin=$("$PY" benchmarks/fuzz_build.py --engine libfuzzer 2>"$dir/build.txt") \
      || { engine=standalone; bin=$("$PY" benchmarks/fuzz_build.py --engine standalone); }
    [ -n "$(ls -A "$dir/corpus")" ] || "$PY" benchmarks/fuzz_targets.py gguf --corpus "$dir/corpus" --seeds-only
    if [ "$engine" = libfuzzer ]; then
      (cd "$dir" && nice "$bin" -max_total_time="$SECS" -seed=$start -print_final_stats=1 -artifact_prefix="crash-" \
        corpus >"log.txt" 2>&1)
    else  # no coverage guidance: a run count that takes about as long
      (cd "$dir" && nice "$bin" -runs=$((SECS * 2000)) -seed=$start corpus >"log.txt" 2>&1)
    fi
    rc=$?
  else
    engine=$("$PY" -c "import atheris" 2>/dev/null && echo atheris || echo random)
    nice "$PY" benchmarks/fuzz_targets.py "$t" --corpus "$dir/corpus" --seconds "$SECS" --seed "$start" \
      >"$log" 2>&1
    rc=$?
  fi
  secs=$(( $(date +%s) - start ))
  execs=$(grep -oE "number_of_executed_units: [0-9]+|Done [0-9]+ runs" "$log" | grep -oE "[0-9]+" | tail -1)
  crashes=$(find "$dir" -maxdepth 1 -name 'crash-*' | wc -l)
  cov=$(grep -oE "cov: [0-9]+ ft: [0-9]+" "$log" | tail -1)
  [ "$rc" -ne 0 ] && [ "$crashes" -eq 0 ] && crashes="rc=$rc"
  [ "$rc" -ne 0 ] || [ "$crashes" != 0 ] && status=1
  echo "| $t | $engine | $secs | ${execs:-?} | $(( ${execs:-0} / (secs > 0 ? secs : 1) )) | $crashes | ${cov:--} |" \
    | tee -a "$summary"
done
[ "$status" -eq 0 ] || echo "crashes or failures: see $OUT/*/crash-* and $OUT/*/log.txt" >&2
exit "$status"
