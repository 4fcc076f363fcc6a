#!/usr/bin/env bash
# Set up, then run the main job end to end on the embedded default, the tiny synthetic DeepSeek-V4
# (exact release layout, random weights): checkpoint -> GGUF (lossless SOURCE and Q4_K_M) -> run with
# the C++ runtime -> KL divergence of Q4_K_M against SOURCE.  Everything goes to ./out/ (git-ignored).
# Installs only what this needs: the package and its C++ core (torch and the llama.cpp test peer are the
# test suite's, in scripts/setup.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
export PIP_ROOT_USER_ACTION=ignore PIP_DISABLE_PIP_VERSION_CHECK=1
start=$(date +%s)
"$PY" -m pip install -q "scikit-build-core>=0.10" "pybind11>=2.12"
"$PY" -m pip install -q --no-build-isolation -e .
echo "installed dsv4-gguf in $(( $(date +%s) - start )) s"
mkdir -p out
dsv4-gguf synth --preset tiny --out out/tiny-ckpt --overwrite
dsv4-gguf check out/tiny-ckpt
for t in SOURCE Q4_K_M; do
  dsv4-gguf convert out/tiny-ckpt -o "out/tiny-$t.gguf" --type "$t" --no-mtp --overwrite
done
dsv4-gguf verify out/tiny-SOURCE.gguf --against out/tiny-ckpt
dsv4-gguf inspect out/tiny-Q4_K_M.gguf
dsv4-gguf run out/tiny-Q4_K_M.gguf --chat -p "Write a haiku about GGUF files." -n 24 --temperature 0
"$PY" -c "import random; w='the a tapir walks under tree at dawn and dusk river'.split(); \
print(' '.join(random.Random(0).choice(w) for _ in range(2000)))" > out/text.txt
rm -rf out/runs
dsv4-gguf eval kld --data out/text.txt --model out/tiny-Q4_K_M.gguf --ref out/tiny-SOURCE.gguf \
  --ref-cache out/runs/ref --out out/runs/kld-Q4_K_M --ctx 128 --chunks 2 --n-ctx 256
cat out/runs/kld-Q4_K_M/results.json
echo "demo finished in $(( $(date +%s) - start )) s"
