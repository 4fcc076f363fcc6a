"""Start-up benchmark: seconds from starting ``dsv4-gguf run MODEL -p ... -n 1`` to its first byte of text on
stdout (process start, imports, GGUF load and validation, tokenizer, prefill, first sampled token), and how
much of that the tokenizer's GGUF header read takes with our reader vs the `gguf` package's ``GGUFReader``.

Peer in the same run: the tokenizer built from ``gguf.GGUFReader``'s fields (what ``build_tokenizer`` did
before it read the header with ``dsv4_gguf.gguf_io.GGUFFile``).  Validates before timing: both tokenizers
have the same vocabulary, merges and special tokens and give the same ids for sample texts (chat markers
included); every timed ``run`` (ours and the peer's) must finish cleanly with its stats line and print the
text an untimed first run printed (greedy decoding of one model), or the benchmark stops.
Time-to-first-token is best-of and median of --rounds cold process starts (the file stays in the page cache;
run it on a quiet machine: the load average is printed).

Usage: python benchmarks/first_token.py [--gguf FILE] [--rounds N] [--threads N] [--json OUT]
Without --gguf it converts the package's synthetic tiny checkpoint (full 129,280-token vocabulary) to MXFP4_MOE.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

TEXTS = [
    "Hello world! Numbers 1234567 and 3.14159.",
    "中文测试：深度求索。日本語のテキスト、カタカナ。",
    "def f(x):\n    return x**2  # code\n\n\ttab",
    "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜></think>OK<｜end▁of▁sentence｜>",
]


def tokenizer_via_gguf_package(path: Path, build: Any = None) -> Any:
    """The peer: ``build_tokenizer`` (or ``build``) fed from ``gguf.GGUFReader``'s fields."""
    from gguf import GGUFReader

    from dsv4_gguf.runtime import build_tokenizer

    r = GGUFReader(str(path))
    md = {k: f.contents() for k, f in r.fields.items() if k.startswith("tokenizer.")}
    return (build or build_tokenizer)(path, metadata=md)


def validate(path: Path) -> None:
    from dsv4_gguf.runtime import build_tokenizer

    ours, peer = build_tokenizer(path), tokenizer_via_gguf_package(path)
    if ours.get_vocab(with_added_tokens=True) != peer.get_vocab(with_added_tokens=True):
        sys.exit("validation failed: vocabularies differ")
    if json.loads(ours.to_str())["model"]["merges"] != json.loads(peer.to_str())["model"]["merges"]:
        sys.exit("validation failed: merges differ")
    for text in TEXTS:
        if ours.encode(text, add_special_tokens=False).ids != peer.encode(text, add_special_tokens=False).ids:
            sys.exit(f"validation failed: token ids differ for {text!r}")
    if (ours.bos_id, ours.eos_id) != (peer.bos_id, peer.eos_id):
        sys.exit("validation failed: BOS/EOS ids differ")


# `dsv4-gguf run` with the tokenizer read through gguf.GGUFReader, as it was before (the peer run)
_PEER_MAIN = """
import sys
sys.path.insert(0, {here!r})
import first_token
from dsv4_gguf import runtime
ours = runtime.build_tokenizer
runtime.build_tokenizer = lambda path, metadata=None: first_token.tokenizer_via_gguf_package(path, ours)
from dsv4_gguf.cli import main
sys.exit(main(sys.argv[1:]))
"""


def first_token_s(path: Path, threads: int, peer: bool = False) -> tuple[float, bytes]:
    """Wall seconds from spawning ``dsv4-gguf run`` to its first stdout byte, and its whole stdout; the run must
    finish cleanly.  ``peer``: the same command with the tokenizer read through ``gguf.GGUFReader``."""
    here = str(Path(__file__).resolve().parent)
    head = ["-c", _PEER_MAIN.format(here=here)] if peer else ["-m", "dsv4_gguf.cli"]
    cmd = [sys.executable, *head, "run", str(path), "-p", "Hello", "-n", "1", "--temperature", "0"]
    cmd += ["-t", str(threads)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, bufsize=0)  # no read-ahead
    assert proc.stdout is not None
    first = proc.stdout.read(1)
    t1 = time.perf_counter()
    rest, err = proc.communicate(timeout=300)
    if proc.returncode != 0 or not (first + rest).strip() or b"[prefill" not in err:
        sys.exit(f"`{' '.join(cmd)}` failed (exit {proc.returncode}): {err.decode(errors='replace')[-2000:]}")
    return t1 - t0, first + rest


def same_output(runs: list[tuple[float, bytes]], want: bytes) -> list[float]:
    """The times of ``runs``; exits unless every run printed ``want`` (greedy decoding of one model: every
    process start, ours or the peer's, must print the same text)."""
    for _, out in runs:
        if out != want:
            sys.exit(f"validation failed: `dsv4-gguf run` printed {out!r}, an earlier run {want!r}")
    return [t for t, _ in runs]


def best_of(fn: Any, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", type=Path, default=None, help="model to time (default: synthetic tiny MXFP4_MOE)")
    ap.add_argument("--rounds", type=int, default=5, help="process starts to time (default 5)")
    ap.add_argument("--threads", type=int, default=2, help="CPU threads of the run (default 2)")
    ap.add_argument("--json", type=Path, default=None, help="also write the figures as JSON here")
    ns = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = ns.gguf
        if path is None:
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from synth_gguf import write_ggufs

            path = write_ggufs("tiny", Path(tmp), ["MXFP4_MOE"])[0]
        validate(path)
        _, want = first_token_s(path, ns.threads)  # untimed: what every timed run must print
        print(f"dsv4-gguf run prints {want!r}", flush=True)
        from gguf import GGUFReader

        from dsv4_gguf.gguf_io import GGUFFile
        from dsv4_gguf.runtime import build_tokenizer

        load0 = os.getloadavg()[0]
        ttft = same_output([first_token_s(path, ns.threads) for _ in range(ns.rounds)], want)
        ttft_peer = same_output(
            [first_token_s(path, ns.threads, peer=True) for _ in range(max(1, ns.rounds // 2))], want
        )
        out = {
            "gguf": str(path) if ns.gguf else "synthetic tiny MXFP4_MOE",
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "threads": ns.threads,
            "first_token_best_s": round(min(ttft), 3),
            "first_token_median_s": round(statistics.median(ttft), 3),
            "first_token_all_s": [round(t, 3) for t in ttft],
            "first_token_gguf_package_best_s": round(min(ttft_peer), 3),
            "header_ours_s": round(best_of(lambda: GGUFFile(path), 3), 3),
            "header_gguf_package_s": round(best_of(lambda: GGUFReader(str(path)), 1), 3),
            "tokenizer_ours_s": round(best_of(lambda: build_tokenizer(path), 3), 3),
            "tokenizer_gguf_package_s": round(best_of(lambda: tokenizer_via_gguf_package(path), 1), 3),
            "load_average": [round(load0, 2), round(os.getloadavg()[0], 2)],
            "cpus": os.cpu_count(),
        }
    ratio = out["tokenizer_gguf_package_s"] / max(out["tokenizer_ours_s"], 1e-9)
    print(f"model: {out['gguf']} ({out['file_mb']} MB), {ns.threads} threads, {out['cpus']} CPUs")
    print(f"load average 1 min: {out['load_average'][0]} before, {out['load_average'][1]} after the runs")
    print(
        f"dsv4-gguf run, first token: best {out['first_token_best_s']:.3f} s, "
        f"median {out['first_token_median_s']:.3f} s of {ns.rounds} process starts; with the tokenizer read "
        f"through gguf.GGUFReader: best {out['first_token_gguf_package_best_s']:.3f} s of {len(ttft_peer)}"
    )
    print(
        f"GGUF header: ours {out['header_ours_s']:.3f} s, gguf.GGUFReader {out['header_gguf_package_s']:.3f} s; "
        f"tokenizer: ours {out['tokenizer_ours_s']:.3f} s, via gguf.GGUFReader "
        f"{out['tokenizer_gguf_package_s']:.3f} s (ratio {ratio:.1f}x)"
    )
    if ns.json:
        ns.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
