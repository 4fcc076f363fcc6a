"""Batched decode benchmark: aggregate decode tok/s of N sequences decoded together (``runtime.decode_batch``,
one forward pass per step, every weight matrix streamed once for all N) vs the same N sequences decoded one
after another (``Session.decode`` N times per step), on one GGUF.

Validates before timing: for the first --check steps every batched logit row must equal the lone session's
bit for bit (np.array_equal), or the benchmark stops.  Then each group decodes --steps greedy steps (its own
argmax) timed with perf_counter; the sequences start at different positions (prompts of 48 + 17 i tokens).
The peer in the same run is the sequential path of the same runtime (the decode tok/s a server without
batching gets); the ratio batched / sequential is what batching buys.  Prints one table line per path and the
ratio; --json writes them too.  Run it on a quiet machine (the load average is printed).

Usage: python benchmarks/batch_decode.py MODEL.gguf [--n 4] [--steps 32] [--check 4] [--threads 2] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from dsv4_gguf import runtime


def _groups(model: runtime.Model, n: int, ctx: int) -> tuple[list[runtime.Session], list[runtime.Session]]:
    rng = np.random.default_rng(0)
    batch, alone = [], []
    for i in range(n):
        prompt = rng.integers(0, model.vocab_size, 48 + 17 * i)
        for group in (batch, alone):
            s = model.session(ctx=ctx)
            s.prefill(prompt)
            group.append(s)
    return batch, alone


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("gguf", type=Path, help="model to time")
    ap.add_argument("--n", type=int, default=4, help="sequences (default 4)")
    ap.add_argument("--steps", type=int, default=32, help="timed decode steps per sequence (default 32)")
    ap.add_argument("--check", type=int, default=4, help="validated steps before timing (default 4)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads (default 2)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ns = ap.parse_args()
    if ns.n < 1 or ns.steps < 1 or ns.check < 1:
        ap.error("--n, --steps and --check must be positive")

    model = runtime.load(ns.gguf, threads=ns.threads, mtp=False)
    batch, alone = _groups(model, ns.n, ctx=48 + 17 * ns.n + ns.check + ns.steps + 1)
    nxt = [int(np.random.default_rng(1).integers(0, model.vocab_size)) for _ in range(ns.n)]
    for step in range(ns.check):
        got = runtime.decode_batch(batch, nxt)
        ref = [s.decode(t) for s, t in zip(alone, nxt, strict=True)]
        for i in range(ns.n):
            if not np.array_equal(got[i], ref[i]):
                raise SystemExit(f"validation failed: sequence {i} at step {step}: batched logits != alone")
        nxt = [int(r.argmax()) for r in ref]
    print(f"validated: {ns.check} steps x {ns.n} sequences, batched logits == alone (bit for bit)")

    t_nb, t_b = list(nxt), list(nxt)
    t0 = time.perf_counter()
    for _ in range(ns.steps):
        t_nb = [int(s.decode(t).argmax()) for s, t in zip(alone, t_nb, strict=True)]
    seq_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(ns.steps):
        t_b = [int(r.argmax()) for r in runtime.decode_batch(batch, t_b)]
    bat_s = time.perf_counter() - t0
    if t_b != t_nb:
        raise SystemExit("the timed greedy continuations differ between batched and sequential decode")

    toks = ns.n * ns.steps
    out = {
        "gguf": str(ns.gguf),
        "n": ns.n,
        "steps": ns.steps,
        "threads": ns.threads,
        "cpu": platform.processor() or platform.machine(),
        "loadavg_1m": os.getloadavg()[0],
        "sequential_tok_s": toks / seq_s,
        "batched_tok_s": toks / bat_s,
        "ratio": seq_s / bat_s,
    }
    print(f"load average (1 min): {out['loadavg_1m']:.2f}; threads {ns.threads}; {out['cpu']}")
    print(f"{'path':<34s} {'seconds':>8s} {'tok/s':>9s}")
    print(f"{f'sequential ({ns.n} x Session.decode)':<34s} {seq_s:8.3f} {out['sequential_tok_s']:9.1f}")
    print(f"{f'batched (decode_batch of {ns.n})':<34s} {bat_s:8.3f} {out['batched_tok_s']:9.1f}")
    print(f"ratio batched / sequential: {out['ratio']:.2f}x")
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
