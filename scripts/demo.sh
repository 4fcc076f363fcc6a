#!/usr/bin/env bash
# Set up, then run the main job on the embedded default: write the tiny synthetic DeepSeek-V4
# checkpoint (exact release layout) and print its census.  Output goes to ./out/ (git-ignored).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
dsv4-gguf synth --preset tiny --out out/tiny-ckpt --overwrite
dsv4-gguf check out/tiny-ckpt
