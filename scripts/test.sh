#!/usr/bin/env bash
# Set up, then run the whole test suite (all tiers, CPU only).  Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
export DSV4_LLAMA_CPP_SRC="${DSV4_LLAMA_CPP_SRC:-$PWD/.cache/llama-cpp-src/llama_cpp_python-0.3.36/vendor/llama.cpp}"
set +e
python3 -m pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "pytest collected no tests: treating that as a failure" >&2
  exit 1
fi
exit "$rc"
