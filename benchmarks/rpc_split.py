"""One of our GGUFs split across two llama.cpp `ggml-rpc-server` processes on 127.0.0.1, against one process.

    python benchmarks/rpc_split.py --gguf /work/tmp/tiny-Q4_K_M.gguf --threads 2 [--write benchmarks/RESULTS.md]

Builds `ggml-rpc-server` and `llama-server` with -DGGML_RPC=ON (CPU, Release, native SIMD, as
benchmarks/llama_server_jinja.sh builds llama-server) from the llama.cpp tree scripts/setup.sh fetched (the tree
llama-cpp-python 0.3.36 vendors) into .cache/llama-rpc/ once (a stamp records the flags and the build time); the
build takes minutes on 2 cores, which is why this is a script and not a CI test.  Then, on the same GGUF and the
same fixed prompts (token ids), greedy, with the top-K log-probabilities of every generated token (llama-server's
`n_probs`, computed from the raw logits):

1. single: `llama-server -m GGUF --no-repack` alone (all weights on this process's CPU backend);
2. split: two `ggml-rpc-server -H 127.0.0.1 -p PORT` processes and `llama-server --no-repack --rpc A,B -ngl 99
   --tensor-split 1,1`: the layers (and their KV cache) on the two RPC devices, half each.

`--no-repack` in both: an RPC server's CPU device keeps weights in plain buffers, while a local CPU backend
repacks some quant types for other kernels (another summation order); without repacking both runs use the
same kernels.  Pass: the greedy tokens are identical and every top-K log-probability of the split run is
within BOUND of the single run's.  Reported: the comparison,
the layer placement the split run's log states, load and generation times of both.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from llama_peer import cpu_simd  # noqa: E402
from serve_load import TEXT, free_port, llama_server_build, wait_healthy  # noqa: E402

SRC = ROOT / ".cache" / "llama-cpp-src" / "llama_cpp_python-0.3.36" / "vendor" / "llama.cpp"
BUILD = ROOT / ".cache" / "llama-rpc"
CMAKE_ARGS = [
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DGGML_RPC=ON",
    "-DLLAMA_CURL=OFF",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
]
TARGETS = ["ggml-rpc-server", "llama-server"]
# |split - single| of a top-K log-probability: the same CPU kernels (no repacking in either run) compute both
# runs; a split changes which process runs a layer and adds copies of activations between processes, not the
# arithmetic, so only float32 rounding of the printed log-probabilities may separate them
BOUND = 1e-5


def build(src: Path, out: Path, jobs: int) -> dict[str, Any]:
    """Configure and build TARGETS into ``out`` unless its stamp says they were built with CMAKE_ARGS."""
    stamp = out / "build-stamp.json"
    if stamp.is_file():
        info = json.loads(stamp.read_text())
        if info.get("cmake_args") == CMAKE_ARGS and all((out / "bin" / t).is_file() for t in TARGETS):
            return {**info, "reused": True}
    if not (src / "CMakeLists.txt").is_file():
        raise SystemExit(f"no llama.cpp source at {src}: run scripts/setup.sh first (or pass --src)")
    out.mkdir(parents=True, exist_ok=True)
    log = out.with_suffix(".log")
    print(f"building {', '.join(TARGETS)} from {src} into {out} (log: {log})", flush=True)
    t0 = time.perf_counter()
    with open(log, "w") as fh:
        for cmd in (
            ["cmake", "-S", str(src), "-B", str(out), "-G", "Ninja", *CMAKE_ARGS],
            ["cmake", "--build", str(out), "--target", *TARGETS, "-j", str(jobs)],
        ):
            if subprocess.run(cmd, stdout=fh, stderr=subprocess.STDOUT).returncode != 0:
                raise SystemExit(f"{' '.join(cmd)} failed; the end of {log}:\n{log.read_text()[-3000:]}")
    info = {"cmake_args": CMAKE_ARGS, "build_s": time.perf_counter() - t0, "jobs": jobs, "src": str(src)}
    tmp = stamp.with_name(stamp.name + ".tmp")
    tmp.write_text(json.dumps(info, indent=1))
    tmp.replace(stamp)
    return {**info, "reused": False}


def complete(base: str, prompt: list[int], n: int, k: int) -> dict[str, Any]:
    body = {"prompt": prompt, "n_predict": n, "temperature": 0.0, "n_probs": k, "cache_prompt": False}
    req = urllib.request.Request(base + "/completion", json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=600) as r:
        out = json.loads(r.read())
    steps = out["completion_probabilities"]
    return {
        "tokens": [int(s["id"]) for s in steps],
        "top": [{int(t["id"]): float(t["logprob"]) for t in s["top_logprobs"]} for s in steps],
        "prompt_ms": float(out["timings"]["prompt_ms"]),
        "predicted_ms": float(out["timings"]["predicted_ms"]),
    }


def run_server(args: list[str], prompts: list[list[int]], ns: argparse.Namespace, work: Path, name: str) -> dict:
    port = free_port()
    log = work / f"{name}.log"
    cmd = [str(ns.build / "bin" / "llama-server"), "-m", str(ns.gguf), "--host", "127.0.0.1", "--port", str(port)]
    # -lv 4: the log states where each weight buffer went (the placement column)
    cmd += ["-np", "1", "-c", str(ns.ctx), "-t", str(ns.threads), "-tb", str(ns.threads), "-lv", "4", *args]
    with open(log, "wb") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT)
    try:
        load_s = wait_healthy(f"http://127.0.0.1:{port}", proc, log)
        runs = [complete(f"http://127.0.0.1:{port}", p, ns.tokens, ns.top_k) for p in prompts]
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    text = log.read_text(errors="replace")
    lines = [" ".join(ln.split(":", 1)[-1].split()) for ln in text.splitlines() if "load_tensors:" in ln]
    placement = [ln for ln in lines if "model buffer size" in ln or ("offloaded" in ln and "layers" in ln)]
    return {"name": name, "load_s": load_s, "runs": runs, "placement": placement, "command": " ".join(cmd[1:])}


def compare_runs(single: list[dict], split: list[dict], bound: float) -> dict[str, Any]:
    """Greedy tokens identical and every top-K log-probability within ``bound``; stops (SystemExit) otherwise."""
    worst, n_tok, n_lp = 0.0, 0, 0
    for i, (a, b) in enumerate(zip(single, split, strict=True)):
        if a["tokens"] != b["tokens"]:
            j = next((j for j, (x, y) in enumerate(zip(a["tokens"], b["tokens"], strict=False)) if x != y), None)
            j = min(len(a["tokens"]), len(b["tokens"])) if j is None else j
            raise SystemExit(f"validation failed: prompt {i}: greedy tokens differ from step {j} on")
        for j, (ta, tb) in enumerate(zip(a["top"], b["top"], strict=True)):
            if set(ta) != set(tb):
                raise SystemExit(f"validation failed: prompt {i}, step {j}: top-K ids {sorted(ta)} vs {sorted(tb)}")
            for t, lp in ta.items():
                d = abs(lp - tb[t])
                worst = max(worst, d)
                if d > bound:
                    raise SystemExit(
                        f"validation failed: prompt {i}, step {j}, id {t}: logprob {tb[t]!r} split vs {lp!r} single "
                        f"(|diff| {d:.3g} > {bound})"
                    )
            n_lp += len(ta)
        n_tok += len(a["tokens"])
    return {"tokens": n_tok, "logprobs": n_lp, "max_abs_diff": worst, "bound": bound}


def format_section(meta: dict, rows: list[dict]) -> str:
    b = meta["build"]
    cmp = meta["comparison"]
    built = "reused from an earlier run" if b["reused"] else "built in this run"
    lines = [
        f"### llama.cpp RPC: {meta['gguf']} split across two `ggml-rpc-server` processes",
        "",
        f"`benchmarks/rpc_split.py` ({meta['command']}): llama.cpp {meta['llama_version']} (the tree "
        f"llama-cpp-python 0.3.36 vendors), `cmake {' '.join(b['cmake_args'])}`, targets {', '.join(TARGETS)} "
        f"({built}: {b['build_s']:.0f} s with -j{b['jobs']}).  {meta['n_prompts']} prompts of "
        f"{min(meta['prompt_lens'])}-{max(meta['prompt_lens'])} tokens, {meta['tokens']} greedy tokens each, "
        f"top-{meta['top_k']} log-probabilities per token, {meta['threads']} threads per process, on "
        f"{meta['cpu']} ({meta['cpus']} cores).",
        "",
        f"Result: the greedy tokens are identical ({cmp['tokens']} of {cmp['tokens']}) and the largest "
        f"|split - single| over {cmp['logprobs']} top-{meta['top_k']} log-probabilities is {cmp['max_abs_diff']:.3g} "
        f"(bound {cmp['bound']:g}).",
        "",
        "| run | llama-server arguments | load (s) | prefill tok/s | generation tok/s | weights placed |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['name']} | `{r['args']}` | {r['load_s']:.1f} | {r['prefill_tok_s']:.1f} | {r['gen_tok_s']:.1f} | "
            f"{'; '.join(r['placement']) or '-'} |"
        )
    lines += [
        "",
        "Both ggml-rpc-server processes run on this machine (127.0.0.1), so the split run pays the copies and TCP "
        "round trips of a distributed run without any second machine's compute or memory: it shows the split is "
        "exact, not what it gains.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=Path, required=True, help="a deepseek4 GGUF of ours")
    ap.add_argument("--src", type=Path, default=SRC, help="llama.cpp source tree")
    ap.add_argument("--build", type=Path, default=BUILD, help="build folder (cached)")
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 2, help="build jobs")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=1024)
    ap.add_argument("--tokens", type=int, default=32, help="greedy tokens per prompt")
    ap.add_argument("--prompts", type=int, default=4)
    ap.add_argument("--top-k", type=int, default=10, help="log-probabilities compared per generated token")
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--write", type=Path, help="put the table into this RESULTS.md (between its markers)")
    ns = ap.parse_args(argv)
    info = build(ns.src, ns.build, ns.jobs)
    from dsv4_gguf import runtime

    m = runtime.load(ns.gguf, threads=1)  # the tokenizer only
    toks = m.encode(TEXT * 4)
    prompts = [[int(m.tokenizer.bos_id), *toks[11 * i : 11 * i + 16 + 24 * i]] for i in range(ns.prompts)]
    del m
    rpc = ns.build / "bin" / "ggml-rpc-server"
    rows, runs = [], {}
    with tempfile.TemporaryDirectory(prefix="rpc-split-") as tmp:
        work = Path(tmp)
        single_args = ["--no-repack"]
        runs["single"] = run_server(single_args, prompts, ns, work, "single")
        ports = [free_port(), free_port()]
        procs = []
        try:
            for i, p in enumerate(ports):
                with open(work / f"rpc{i}.log", "wb") as fh:
                    cmd = [str(rpc), "-H", "127.0.0.1", "-p", str(p), "-t", str(ns.threads)]
                    procs.append(subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT))
            time.sleep(1.0)
            for i, pr in enumerate(procs):
                if pr.poll() is not None:
                    raise SystemExit(f"ggml-rpc-server {i} exited: {(work / f'rpc{i}.log').read_text()[-2000:]}")
            split_args = ["--no-repack", "--rpc", ",".join(f"127.0.0.1:{p}" for p in ports), "-ngl", "99"]
            split_args += ["--tensor-split", "1,1"]
            runs["split"] = run_server(split_args, prompts, ns, work, "split")
        finally:
            for pr in procs:
                pr.terminate()
                pr.wait(timeout=30)
        for name, args in (("single", single_args), ("split", split_args)):
            r = runs[name]
            n_prompt = sum(len(p) for p in prompts)
            n_gen = sum(len(x["tokens"]) for x in r["runs"])
            rows.append(
                {
                    "name": name,
                    "args": " ".join(args) or "(none)",
                    "load_s": r["load_s"],
                    "prefill_tok_s": n_prompt / (sum(x["prompt_ms"] for x in r["runs"]) / 1e3),
                    "gen_tok_s": n_gen / (sum(x["predicted_ms"] for x in r["runs"]) / 1e3),
                    "placement": r["placement"],
                }
            )
    cmp = compare_runs(runs["single"]["runs"], runs["split"]["runs"], BOUND)
    meta = {
        "gguf": ns.gguf.name,
        "command": f"--threads {ns.threads} --tokens {ns.tokens} --prompts {ns.prompts} --top-k {ns.top_k}",
        "llama_version": llama_server_build(ns.build / "bin" / "llama-server")["version"],
        "build": {k: info[k] for k in ("cmake_args", "build_s", "jobs", "reused")},
        "n_prompts": len(prompts),
        "prompt_lens": [len(p) for p in prompts],
        "tokens": ns.tokens,
        "top_k": ns.top_k,
        "threads": ns.threads,
        "cpu": cpu_simd()["model"],
        "cpus": os.cpu_count(),
        "comparison": cmp,
    }
    import results_md

    results_md.publish(
        "rpc_split", format_section(meta, rows), {"meta": meta, "rows": rows}, json_path=ns.json, md=ns.write
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
