"""A bounded load test of `dsv4-gguf serve` and llama.cpp's `llama-server` on the same GGUF, in one run.

    python benchmarks/serve_load.py --gguf /work/tmp/tiny-Q4_K_M.gguf --parallel 4 --threads 2 \
        [--write benchmarks/RESULTS.md]

Each server is started by the script on 127.0.0.1 (a free port), one after the other, on the same GGUF with the
same slot count (ours `--parallel N`, llama-server `-np N`), threads and per-slot context.  Per server:

1. alone: every fixed prompt one request at a time, non-streamed, greedy, 1 + ``--alone-passes`` times: the
   first pass gives the reference answers (every later one must repeat them); the later ones, with the prompts
   in the server's prompt cache as they are under load, are timed, and the fastest is the one-sequence
   throughput (generated tokens / wall time; a pass is under a second on tiny, so one pass alone is noisy);
2. load: C clients x R requests at once on `/v1/completions` (prompts as token ids, so both servers see the same
   tokens), greedy; request j of client c uses prompt (c + j) mod P, every other request streams, and every
   fifth streamed one is cancelled (the connection closed) after its first few text chunks.

3. decode scaling: ``--scaling-rounds`` paired rounds, each one pass of every prompt one request at a time and
   one pass of the same prompts with ``--parallel`` requests in flight at once (non-streamed, greedy; the two
   passes' order alternates between rounds).  A round's ratio is the parallel pass's generated tok/s over the
   sequential pass's, both measured within a few seconds of each other, so a slow spell of the machine hits
   both; the median over the rounds is the figure (the range is reported).  This is the slots decoding
   together, without the load test's queueing, cancellations and prompt admissions.

Validation before any figure counts: every request is accounted for (no transport error, no missing answer), a
completed answer equals its prompt's alone answer, a cancelled one got a prefix of it, and an answer equal to
another prompt's answer (mixed between clients) stops the benchmark.  Reported: latency p50/p99 of completed
requests (end to end), time to first text of the streamed ones, and aggregate generated tok/s (completed
requests' tokens, counted from the alone answers' usage, over the load phase's wall time; cancelled requests'
tokens are not counted).  Does not build llama-server (benchmarks/llama_server_jinja.sh does).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(HERE))

from llama_peer import cpu_simd  # noqa: E402

LLAMA_SERVER = ROOT / ".cache" / "llama-server" / "bin" / "llama-server"
BUILD_SCRIPT = "benchmarks/llama_server_jinja.sh"
# what llama_server_jinja.sh passes to cmake; the CMakeCache values are read back and shown next to these
CMAKE_KEYS = ("CMAKE_BUILD_TYPE", "GGML_NATIVE", "GGML_RPC", "LLAMA_CURL")
TEXT = (
    "The river ran under the old stone bridge, past the mill and the orchard, and into the valley where the "
    "tapirs came down at dawn to drink. Nobody in the village remembered who had built the bridge, but every "
    "spring somebody climbed down with a lantern to look at the carved numbers on its keystone. "
)
CANCEL_AFTER = 3  # text chunks a cancelled request reads before it closes its connection


# ---- the workload


def make_prompts(tokenize: Any, bos: int, n: int, base_len: int) -> list[list[int]]:
    """``n`` distinct prompts (BOS + a slice of TEXT's tokens) of base_len ... about 3 x base_len tokens."""
    toks = tokenize(TEXT * 8)
    out = []
    for i in range(n):
        length = base_len + (2 * base_len * i) // max(n - 1, 1)
        out.append([bos, *toks[i * 7 : i * 7 + length]])
    return out


def plan(clients: int, requests: int, n_prompts: int) -> list[list[tuple[int, str]]]:
    """Per client, its requests as (prompt index, mode); mode: 'plain', 'stream' or 'cancel'."""
    out = []
    for c in range(clients):
        reqs = []
        for j in range(requests):
            mode = "plain" if j % 2 else ("cancel" if j % 10 == 4 else "stream")
            reqs.append(((c + j) % n_prompts, mode))
        out.append(reqs)
    return out


@dataclass
class Result:
    client: int
    prompt: int
    mode: str
    text: str = ""
    latency: float = 0.0
    ttft: float | None = None
    error: str = ""
    chunks: int = 0


# ---- HTTP


def _post(base: str, path: str, body: dict, timeout: float = 600.0) -> dict:
    req = urllib.request.Request(base + path, json.dumps(body).encode(), {"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def completion_body(model: str, prompt: list[int], max_tokens: int, stream: bool) -> dict:
    body: dict[str, Any] = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0}
    if stream:
        body["stream"] = True
    return body


def run_request(host: str, port: int, model: str, prompt: list[int], mode: str, max_tokens: int, r: Result) -> None:
    """One /v1/completions request on its own connection; fills ``r`` (a transport or HTTP error goes to
    r.error, never raised: the load phase accounts for every request)."""
    conn = http.client.HTTPConnection(host, port, timeout=600)
    t0 = time.perf_counter()
    try:
        body = json.dumps(completion_body(model, prompt, max_tokens, mode != "plain"))
        conn.request("POST", "/v1/completions", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        if resp.status != 200:
            r.error = f"HTTP {resp.status}: {resp.read()[:200]!r}"
            return
        if mode == "plain":
            r.text = json.loads(resp.read())["choices"][0]["text"]
            r.latency = time.perf_counter() - t0
            return
        parts = []
        while True:
            line = resp.readline()
            if not line:
                r.error = "the stream ended without [DONE]"
                return
            line = line.strip()
            if not line.startswith(b"data:"):
                continue
            data = line[5:].strip()
            if data == b"[DONE]":
                break
            ev = json.loads(data)
            if "error" in ev:
                r.error = f"stream error: {ev['error']}"
                return
            piece = "".join(c.get("text") or "" for c in ev.get("choices", []))
            if piece:
                if r.ttft is None:
                    r.ttft = time.perf_counter() - t0
                parts.append(piece)
                r.chunks += 1
                if mode == "cancel" and r.chunks >= CANCEL_AFTER:
                    break
        r.text = "".join(parts)
        r.latency = time.perf_counter() - t0
    except (OSError, http.client.HTTPException, ValueError, KeyError) as e:
        r.error = f"{type(e).__name__}: {e}"
    finally:
        conn.close()  # for 'cancel': the server sees the connection drop mid-stream


def run_load(
    host: str, port: int, model: str, prompts: list[list[int]], schedule: list[list[tuple[int, str]]], max_tokens: int
) -> tuple[list[Result], float]:
    results: list[Result] = []
    lock = threading.Lock()
    start = threading.Barrier(len(schedule) + 1)

    def client(c: int) -> None:
        start.wait()
        for p, mode in schedule[c]:
            r = Result(c, p, mode)
            run_request(host, port, model, prompts[p], mode, max_tokens, r)
            with lock:
                results.append(r)

    threads = [threading.Thread(target=client, args=(c,), daemon=True) for c in range(len(schedule))]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    return results, time.perf_counter() - t0


def run_pass(base: str, prompts: list[list[int]], max_tokens: int, width: int) -> tuple[list[str], list[int], float]:
    """Every prompt once, non-streamed, ``width`` requests in flight at a time (1: one after another): the
    answers, each one's generated tokens (usage's completion tokens) and the pass's wall time."""
    texts: list[str] = [""] * len(prompts)
    n_tok = [0] * len(prompts)
    errors: list[str] = []
    todo = list(range(len(prompts)))
    lock = threading.Lock()

    def worker() -> None:
        while True:
            with lock:
                if not todo:
                    return
                i = todo.pop(0)
            try:
                out = _post(base, "/v1/completions", completion_body("m", prompts[i], max_tokens, False))
                texts[i] = out["choices"][0]["text"]
                n_tok[i] = int(out["usage"]["completion_tokens"])
            except (OSError, ValueError, KeyError) as e:
                with lock:
                    errors.append(f"prompt {i}: {type(e).__name__}: {e}")

    t0 = time.perf_counter()
    threads = [threading.Thread(target=worker, daemon=True) for _ in range(width)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} of a pass's requests failed, first: {errors[0]}")
    return texts, n_tok, wall


def decode_scaling(
    kind: str, base: str, prompts: list[list[int]], alone: list[str], ns: argparse.Namespace
) -> dict[str, Any]:
    """Paired rounds of a sequential and a ``--parallel``-wide pass (see the module docstring, step 3)."""
    rounds, differ = [], 0
    for i in range(ns.scaling_rounds):
        got: dict[int, float] = {}
        for width in (1, ns.parallel) if i % 2 == 0 else (ns.parallel, 1):
            texts, n_tok, wall = run_pass(base, prompts, ns.max_tokens, width)
            tok_s = sum(n_tok) / wall
            bad = [j for j, (t, a) in enumerate(zip(texts, alone, strict=True)) if t != a]
            if bad and kind == "ours":
                raise SystemExit(f"{kind}: decode scaling, {width} at a time: prompt {bad[0]} answered differently")
            differ += len(bad)
            got[width] = tok_s
        rounds.append({"one": got[1], "parallel": got[ns.parallel], "ratio": got[ns.parallel] / got[1]})
    return {"rounds": rounds, "median": float(np.median([r["ratio"] for r in rounds])), "differ": differ}


# ---- validation


def _lcp(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)


def check_responses(alone: list[str], results: list[Result], expected: int, exact: bool = True) -> dict[str, Any]:
    """Every request accounted for; each completed answer equal to its prompt's alone answer, each cancelled one
    a non-empty prefix of it.  Stops (SystemExit) on a lost request or an answer mixed up with another prompt's
    (closer to another prompt's alone answer than to its own: a longer common prefix).  Any other difference
    stops too when ``exact``; otherwise (a server whose batched decode is not batch-invariant) it is counted,
    with the character where the answer left its alone answer.  Returns the counts per mode, the number of
    answers equal to (cancelled: a prefix of) their alone answer, and those divergence points."""
    if len(results) != expected:
        raise SystemExit(f"validation failed: {len(results)} results for {expected} requests (lost requests)")
    lost = [r for r in results if r.error]
    if lost:
        r = lost[0]
        raise SystemExit(
            f"validation failed: {len(lost)} requests lost, e.g. client {r.client} prompt {r.prompt} ({r.mode}): "
            f"{r.error}"
        )
    equal, diverged = 0, []
    for r in results:
        want = alone[r.prompt]
        if want.startswith(r.text) and r.text != "" if r.mode == "cancel" else r.text == want:
            equal += 1
            continue
        own = _lcp(r.text, want)
        best = max(((_lcp(r.text, a), i) for i, a in enumerate(alone) if i != r.prompt), default=(0, -1))
        if best[0] > own or (exact and r.text and best[0] == len(r.text)):
            what = f"prompt {best[1]}'s answer (mixed between clients)"
        elif exact or not r.text:
            what = "an answer of no prompt"
        else:
            diverged.append(own)
            continue
        raise SystemExit(
            f"validation failed: client {r.client}, prompt {r.prompt} ({r.mode}) got {what}: {r.text[:80]!r} "
            f"instead of {want[:80]!r}"
        )
    counts = {m: sum(r.mode == m for r in results) for m in ("plain", "stream", "cancel")}
    return {"counts": counts, "equal": equal, "diverged_at": diverged}


def percentiles(values: list[float]) -> tuple[float, float]:
    """p50 and p99 (numpy's linear interpolation) in seconds."""
    v = np.asarray(values, np.float64)
    return float(np.percentile(v, 50)), float(np.percentile(v, 99))


# ---- servers


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_healthy(base: str, proc: subprocess.Popen, log: Path, limit: float = 300.0) -> float:
    t0 = time.perf_counter()
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited with {proc.returncode}; its log ({log}):\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return time.perf_counter() - t0
        except OSError:
            pass
        if time.perf_counter() - t0 > limit:
            raise SystemExit(
                f"no healthy server at {base} within {limit:.0f} s; its log ({log}):\n{log.read_text()[-3000:]}"
            )
        time.sleep(0.25)


def _idle_stats(base: str, limit: float = 10.0) -> dict:
    """Our /stats once every slot is free again (a cancelled stream frees its slot when the server notices the
    dropped connection); stops if slots stay busy or requests stay queued after every client finished."""
    t0 = time.perf_counter()
    while True:
        with urllib.request.urlopen(base + "/stats", timeout=10) as r:
            stats = json.loads(r.read())
        if not stats["busy_slots"] and not stats["queued"]:
            return stats
        if time.perf_counter() - t0 > limit:
            raise SystemExit(f"ours: slots still busy {limit:.0f} s after every client finished: {stats}")
        time.sleep(0.1)


def server_command(kind: str, ns: argparse.Namespace, port: int) -> list[str]:
    if kind == "ours":
        return [
            sys.executable, "-m", "dsv4_gguf.cli", "serve", str(ns.gguf), "--port", str(port), "--name", "m",
            "--parallel", str(ns.parallel), "--ctx", str(ns.ctx), "--threads", str(ns.threads),
        ]  # fmt: skip
    return [
        str(ns.llama_server), "-m", str(ns.gguf), "--host", "127.0.0.1", "--port", str(port), "--alias", "m",
        "-np", str(ns.parallel), "-c", str(ns.ctx * ns.parallel), "-t", str(ns.threads), "-tb", str(ns.threads),
    ]  # fmt: skip


def llama_server_build(binary: Path) -> dict[str, Any]:
    """Version line of the binary and the cmake settings of its build folder (binary/../../CMakeCache.txt)."""
    out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=60)
    lines = [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith(("version", "built with"))]
    cache = binary.parent.parent / "CMakeCache.txt"
    flags = {}
    if cache.is_file():
        for line in cache.read_text().splitlines():
            key = line.split(":", 1)[0]
            if key in CMAKE_KEYS:
                flags[key] = line.split("=", 1)[1]
    return {"version": "; ".join(lines) or "unknown", "cmake": flags}


def bench_server(kind: str, ns: argparse.Namespace, prompts: list[list[int]], work: Path) -> dict[str, Any]:
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    log = work / f"{kind}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(server_command(kind, ns, port), stdout=fh, stderr=subprocess.STDOUT)
    try:
        start_s = wait_healthy(base, proc, log)
        # one at a time: the reference answers, then the one-sequence rate
        passes = [run_pass(base, prompts, ns.max_tokens, 1) for _ in range(1 + ns.alone_passes)]
        alone, n_tok, _ = passes[1]
        if any(t != passes[0][0] for t, _, _ in passes[1:]):
            raise SystemExit(f"{kind}: a later alone pass answered differently from the first")
        alone_s = min(s for _, _, s in passes[1:])  # the fastest timed pass: the one-sequence rate at its best
        if len(set(alone)) < len(alone):
            raise SystemExit(f"{kind}: two prompts have the same alone answer; mixing could not be told apart")
        schedule = plan(ns.clients, ns.requests, len(prompts))
        results, wall = run_load("127.0.0.1", port, "m", prompts, schedule, ns.max_tokens)
        # ours decodes each slot alone: its answers must not change under load; llama-server's batched decode
        # may round differently than a single sequence's, which can flip a greedy choice (counted, not fatal)
        check = check_responses(alone, results, ns.clients * ns.requests, exact=kind == "ours")
        stats = _idle_stats(base) if kind == "ours" else None
        scaling = decode_scaling(kind, base, prompts, alone, ns)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    done = [r for r in results if r.mode != "cancel"]
    ttft = [r.ttft for r in results if r.mode != "plain" and r.ttft is not None]
    gen = sum(n_tok[r.prompt] for r in done)
    lat = percentiles([r.latency for r in done])
    tt = percentiles(ttft)
    return {
        "server": kind,
        "start_s": start_s,
        "alone_tok_s": sum(n_tok) / alone_s,
        "alone_pass_tok_s": [sum(n_tok) / t for _, _, t in passes[1:]],
        "load_tok_s": gen / wall,
        "wall_s": wall,
        "generated": gen,
        "lat_p50": lat[0],
        "lat_p99": lat[1],
        "ttft_p50": tt[0],
        "ttft_p99": tt[1],
        "counts": check["counts"],
        "equal_alone": check["equal"],
        "diverged_at": check["diverged_at"],
        "cancelled_seen": None if stats is None else stats.get("cancelled"),
        "server_stats": stats,  # ours: /stats after the load (both alone passes included)
        "scaling": scaling,
    }


# ---- report


def format_section(meta: dict, rows: list[dict]) -> str:
    ls = meta["llama_server"]
    flags = ", ".join(f"{k}={v}" for k, v in ls["cmake"].items()) or "not recorded"
    c = rows[0]["counts"]
    lines = [
        f"### Serving under load: {meta['gguf']}, {meta['parallel']} slots, {meta['threads']} threads",
        "",
        f"`benchmarks/serve_load.py`: {meta['clients']} concurrent clients x {meta['requests']} requests on "
        f"`/v1/completions` ({c['plain']} non-streamed, {c['stream']} streamed, {c['cancel']} streamed and "
        f"cancelled after {meta['cancel_after']} text chunks), greedy, at most {meta['max_tokens']} tokens, "
        f"{meta['n_prompts']} fixed prompts of {min(meta['prompt_lens'])}-{max(meta['prompt_lens'])} tokens "
        f"(the same token ids to both servers), {meta['ctx']} tokens of context per slot.  Before any figure "
        "counted, every request was accounted for and no answer was closer to another prompt's answer than to "
        "its own (nothing lost or mixed between clients); ours also had to give every prompt's answer run alone "
        "on the same server exactly (cancelled requests: a prefix of it).  "
        f"Ours: `dsv4-gguf serve --parallel {meta['parallel']}` at commit {meta['commit']}.  Peer: llama-server "
        f"({ls['version']}; {flags}; built by `{BUILD_SCRIPT}` from the llama.cpp tree llama-cpp-python "
        f"0.3.36 vendors) with `-np {meta['parallel']} -c {meta['ctx'] * meta['parallel']}`.  CPU: {meta['cpu']} "
        f"({meta['cpus']} cores; {' '.join(meta['simd'])}); 1/5/15-min load average at the end "
        f"{', '.join(f'{x:.2f}' for x in meta['loadavg'])}.",
        "",
        "| server | answers = alone | alone tok/s | under load tok/s | load / alone | latency p50 / p99 (s) | "
        "first text p50 / p99 (s) | load phase (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = "dsv4-gguf serve" if r["server"] == "ours" else "llama-server"
        lines.append(
            f"| {name} | {r['equal_alone']} / {sum(r['counts'].values())} | {r['alone_tok_s']:.1f} | "
            f"{r['load_tok_s']:.1f} | {r['load_tok_s'] / r['alone_tok_s']:.2f}x | {r['lat_p50']:.2f} / "
            f"{r['lat_p99']:.2f} | {r['ttft_p50']:.2f} / {r['ttft_p99']:.2f} | {r['wall_s']:.1f} |"
        )
    for r in rows:
        d = r["diverged_at"]
        if d:
            name = "dsv4-gguf serve" if r["server"] == "ours" else "llama-server"
            lines += [
                "",
                f"{name}: {len(d)} answers under load left their prompt's alone answer (first differing character: "
                f"median {int(np.median(d))}, range {min(d)}-{max(d)}), each closer to its own prompt's answer than "
                "to any other's; its alone answers themselves were reproducible (two passes).  Why is not established "
                "here: a batched forward that rounds differently from a one-sequence forward would do it (a flipped "
                "greedy choice), and so would state leaking between the sequences of one batch.",
            ]
    if all("scaling" in r for r in rows):
        lines += [
            "",
            f"Decode scaling, {meta['parallel']} requests in flight vs one at a time (the same {meta['n_prompts']} "
            f"prompts, greedy, at most {meta['max_tokens']} tokens; {len(rows[0]['scaling']['rounds'])} paired "
            "rounds, the two passes of a round back to back):",
            "",
            "| server | median ratio | range | one at a time, median tok/s | parallel, median tok/s | answers off |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            sc = r["scaling"]
            ratios = [x["ratio"] for x in sc["rounds"]]
            name = "dsv4-gguf serve" if r["server"] == "ours" else "llama-server"
            lines.append(
                f"| {name} | {sc['median']:.2f}x | {min(ratios):.2f}-{max(ratios):.2f}x | "
                f"{np.median([x['one'] for x in sc['rounds']]):.1f} | "
                f"{np.median([x['parallel'] for x in sc['rounds']]):.1f} | {sc['differ']} |"
            )
    lines += [
        "",
        f"alone: the prompts one at a time (prompts cached, as under load), the fastest of {meta['alone_passes']} "
        "timed passes after a first that gives the reference answers: the one-sequence rate.  "
        "under load: generated tokens of the completed requests over the load phase's wall time.  Latency: request "
        "sent to answer complete (completed requests); first text: request sent to the first non-empty streamed "
        "chunk.",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gguf", type=Path, required=True, help="a deepseek4 GGUF both servers load")
    ap.add_argument("--parallel", type=int, default=4, help="slots of each server (ours --parallel, llama -np)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--ctx", type=int, default=1024, help="context tokens per slot")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=20, help="requests per client")
    ap.add_argument("--max-tokens", type=int, default=64)
    ap.add_argument(
        "--alone-passes", type=int, default=3, help="timed one-at-a-time passes after the first (the fastest counts)"
    )
    ap.add_argument(
        "--scaling-rounds", type=int, default=9, help="paired rounds of the decode-scaling measurement (step 3)"
    )
    ap.add_argument("--prompts", type=int, default=8, help="distinct fixed prompts")
    ap.add_argument("--prompt-len", type=int, default=24, help="shortest prompt (the longest is ~3x)")
    ap.add_argument("--servers", default="ours,llama", help="comma list of ours, llama")
    ap.add_argument("--llama-server", type=Path, default=LLAMA_SERVER)
    ap.add_argument("--json", type=Path, help="write the results here")
    ap.add_argument("--write", type=Path, help="put the table into this RESULTS.md (between its markers)")
    ns = ap.parse_args(argv)
    kinds = ns.servers.split(",")
    if "llama" in kinds and not ns.llama_server.is_file():
        ap.error(f"no llama-server at {ns.llama_server}: build it with `bash {BUILD_SCRIPT}`, or --servers ours")
    from dsv4_gguf import runtime

    m = runtime.load(ns.gguf, threads=1)  # the tokenizer only
    prompts = make_prompts(m.encode, int(m.tokenizer.bos_id), ns.prompts, ns.prompt_len)
    del m
    rows = []
    with tempfile.TemporaryDirectory(prefix="serve-load-") as work:
        for kind in kinds:
            print(f"{kind}: starting", flush=True)
            rows.append(bench_server(kind, ns, prompts, Path(work)))
            print(json.dumps(rows[-1]), flush=True)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT)
    meta = {
        "gguf": ns.gguf.name,
        "parallel": ns.parallel,
        "threads": ns.threads,
        "ctx": ns.ctx,
        "clients": ns.clients,
        "alone_passes": ns.alone_passes,
        "scaling_rounds": ns.scaling_rounds,
        "requests": ns.requests,
        "max_tokens": ns.max_tokens,
        "n_prompts": len(prompts),
        "prompt_lens": [len(p) for p in prompts],
        "cancel_after": CANCEL_AFTER,
        "commit": commit.stdout.strip() or "unknown",
        "llama_server": llama_server_build(ns.llama_server) if "llama" in kinds else {"version": "-", "cmake": {}},
        "cpu": cpu_simd()["model"],
        "simd": [f for f, on in cpu_simd()["flags"].items() if on],
        "cpus": os.cpu_count(),
        "loadavg": list(os.getloadavg()),
    }
    import results_md

    results_md.publish(
        "serve_load", format_section(meta, rows), {"meta": meta, "rows": rows}, json_path=ns.json, md=ns.write
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
