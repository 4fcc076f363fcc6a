#!/usr/bin/env bash
# Does `llama-server --jinja` start on a GGUF of ours and answer a chat request with tools through the
# chat template we embed?  llama.cpp's server renders templates with its own C++ Jinja engine (the test
# suite checks that engine on the whole chat corpus: tests/chat/test_llama_cpp_jinja.py); this step
# checks the server itself, which takes too long to build for CI.
#
# Builds llama-server (CPU, Release) from the llama.cpp tree that scripts/setup.sh fetched (the exact
# tree llama-cpp-python 0.3.36 bundles) into .cache/llama-server/ (315 s on 2 cores here the first
# time), converts the tiny synthetic model to Q8_0, starts the server with --jinja on a free port,
# waits for /health, sends one /v1/chat/completions request with a tool definition, and checks that
# the reply is a well-formed chat completion.  Exit 0 only if all of that holds.
#
# Usage: bash benchmarks/llama_server_jinja.sh [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
SRC="${DSV4_LLAMA_CPP_SRC:-$PWD/.cache/llama-cpp-src/llama_cpp_python-0.3.36/vendor/llama.cpp}"
BUILD=.cache/llama-server
WORK="${1:-$(mktemp -d)}"
mkdir -p "$WORK"
[ -f "$SRC/CMakeLists.txt" ] || { echo "no llama.cpp source at $SRC: run scripts/setup.sh first" >&2; exit 1; }

if [ ! -x "$BUILD/bin/llama-server" ]; then
  t0=$(date +%s)
  echo "building llama-server from $SRC into $BUILD (CPU, Release)"
  mkdir -p "$BUILD"
  { cmake -S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF \
      -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF &&
    cmake --build "$BUILD" --target llama-server -j "$(nproc)"; } >"$BUILD.log" 2>&1 ||
    { tail -40 "$BUILD.log" >&2; echo "llama-server build failed (log: $BUILD.log)" >&2; exit 1; }
  echo "built in $(( $(date +%s) - t0 )) s"
fi
"$BUILD/bin/llama-server" --version 2>&1 | head -2

dsv4-gguf synth --preset tiny --out "$WORK/tiny-ckpt" --overwrite >/dev/null
dsv4-gguf convert "$WORK/tiny-ckpt" -o "$WORK/tiny-Q8_0.gguf" --type Q8_0 --no-mtp --overwrite >/dev/null
PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
"$BUILD/bin/llama-server" -m "$WORK/tiny-Q8_0.gguf" --jinja --port "$PORT" --host 127.0.0.1 -c 2048 -t 2 \
  >"$WORK/server.log" 2>&1 &
PID=$!
trap 'kill $PID 2>/dev/null || true' EXIT
"$PY" - "$PORT" "$WORK/server.log" <<'EOF'
import json, sys, time, urllib.request

port, log = sys.argv[1], sys.argv[2]
base = f"http://127.0.0.1:{port}"
t0 = time.time()
while True:
    try:
        with urllib.request.urlopen(base + "/health", timeout=2) as r:
            if r.status == 200:
                break
    except OSError:
        pass
    if time.time() - t0 > 120:
        sys.exit("llama-server did not become healthy within 120 s; its log:\n" + open(log).read()[-4000:])
    time.sleep(0.5)
print(f"llama-server --jinja healthy after {time.time() - t0:.1f} s")
req = {
    "messages": [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is the weather in Paris?"},
    ],
    "tools": [
        {
            "type": "function",
            "function": {
                "name": "get_weather",
                "description": "Current weather of a city",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
            },
        }
    ],
    "max_tokens": 8,
    "temperature": 0,
}
r = urllib.request.Request(base + "/v1/chat/completions", json.dumps(req).encode(), {"Content-Type": "application/json"})
with urllib.request.urlopen(r, timeout=120) as resp:
    out = json.load(resp)
choice = out["choices"][0]
assert choice["message"]["role"] == "assistant" and out["usage"]["prompt_tokens"] > 0, out
print(f"chat completion with tools: {out['usage']['prompt_tokens']} prompt tokens, finish {choice['finish_reason']}")
EOF
echo "llama-server --jinja: OK"
