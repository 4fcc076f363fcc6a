"""Runtime benchmark: prefill / decode tokens/s of our C++ runtime vs llama.cpp (llama-cpp-python) on
the same GGUF, same threads, same run, as ratios; quantized matvec GB/s next to measured memcpy
bandwidth; KV bytes/token vs the analytic value (spec §11).

Validates before timing: both engines' logits on the prompt must agree (top-1 rate printed).
Usage: python benchmarks/runtime.py [--gguf FILE ...] [--threads N] [--json OUT] [--matvec-only]
Without --gguf it writes the tiny random-weight model (full vocabulary) in MXFP4_MOE and Q4_K_M.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent


def _fixture():
    spec = importlib.util.spec_from_file_location("rt_gf", HERE.parent / "tests" / "runtime" / "gguf_fixture.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod
    spec.loader.exec_module(mod)
    return mod


def bench_pair(path: Path, threads: int, n_prompt: int, n_decode: int) -> dict:
    import llama_cpp

    from dsv4_gguf import runtime

    rng = np.random.default_rng(0)
    toks = rng.integers(0, 1000, n_prompt).tolist()
    ours = runtime.load(path, threads=threads)
    s = ours.session(ctx=n_prompt + n_decode + 8)
    t0 = time.perf_counter()
    lg = s.prefill(toks)
    t_pf = time.perf_counter() - t0
    nxt = int(lg.argmax())
    t0 = time.perf_counter()
    for _ in range(n_decode):
        nxt = int(s.decode(nxt).argmax())
    t_dec = time.perf_counter() - t0

    llm = llama_cpp.Llama(model_path=str(path), n_ctx=n_prompt + n_decode + 8, n_batch=512, n_ubatch=512,
                          verbose=False, n_threads=threads, n_threads_batch=threads)
    def last_logits() -> np.ndarray:  # without logits_all (which would add a full-vocab head per prompt token)
        return np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm._ctx.ctx, -1), shape=(llm.n_vocab(),))

    t0 = time.perf_counter()
    llm.eval(toks)
    l_pf = time.perf_counter() - t0
    peer = last_logits().copy()
    peer_top = int(np.argmax(peer))
    nxt2 = peer_top
    t0 = time.perf_counter()
    for _ in range(n_decode):
        llm.eval([nxt2])
        nxt2 = int(np.argmax(last_logits()))
    l_dec = time.perf_counter() - t0
    # validate: both engines computed the same model (random-weight MoE: close, not equal)
    assert np.isfinite(lg).all() and np.corrcoef(lg, peer)[0, 1] > 0.9, "engines disagree on the prompt logits"
    return {"gguf": path.name, "threads": threads, "prompt": n_prompt, "decode": n_decode,
            "top1_first_equal": int(lg.argmax()) == peer_top, "prompt_logit_corr": float(np.corrcoef(lg, peer)[0, 1]),
            "ours_prefill_tok_s": n_prompt / t_pf, "llama_prefill_tok_s": n_prompt / l_pf,
            "ours_decode_tok_s": n_decode / t_dec, "llama_decode_tok_s": n_decode / l_dec,
            "prefill_ratio": l_pf / t_pf, "decode_ratio": l_dec / t_dec,
            "kv_bytes_per_token": s.kv_bytes()["per_token"]}


MATVEC_TYPES = (("Q8_0", 8), ("MXFP4", 39), ("Q4_K", 12), ("Q6_K", 14))


def _memcpy_gb_s(threads: int = 1, reps: int = 5) -> float:
    """Best of `reps` copies of 512 MB split over `threads` threads (read + write bytes / time)."""
    src = np.empty(512 << 20, np.uint8)
    src[:] = 1
    dst = np.empty_like(src)
    best = float("inf")
    with ThreadPoolExecutor(threads) as ex:
        step = -(-src.size // threads)
        for _ in range(reps):
            t0 = time.perf_counter()
            list(ex.map(lambda t: np.copyto(dst[t * step:(t + 1) * step], src[t * step:(t + 1) * step]),
                        range(threads)))
            best = min(best, time.perf_counter() - t0)
    return 2 * src.nbytes / best / 1e9


def _read_gb_s(threads: int = 1, reps: int = 5) -> float:
    """Best of `reps` read-only passes over 512 MB split over `threads` threads (an OR-reduction of 64-bit
    words: bytes read / time).  A matvec only reads its weights, so this is its bandwidth roof."""
    src = np.ones(64 << 20, np.uint64)
    best = float("inf")
    with ThreadPoolExecutor(threads) as ex:
        step = -(-src.size // threads)
        for _ in range(reps):
            t0 = time.perf_counter()
            list(ex.map(lambda t: np.bitwise_or.reduce(src[t * step:(t + 1) * step]), range(threads)))
            best = min(best, time.perf_counter() - t0)
    return src.nbytes / best / 1e9


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


def bench_matvec(threads: int, calls: int = 20, stream_mb: int = 512) -> dict:
    """Quantized matvec (`_C.matvec`, the kernels the runtime calls) on a 16384 x 4096 matrix, weight GB/s
    next to memcpy measured before and after in the same run.  `cold`: each call reads a different copy of
    the matrix, cycling over >= `stream_mb` MB so that the weights come from DRAM as in decode (one 35-70 MB
    matrix fits in a large L3); `hot`: the same copy every call.  The machine may be shared, so all timings
    are best-of and `pct` divides the cold figure by the larger memcpy; the 1-minute load average is recorded."""
    from dsv4_gguf import _C

    rows, cols = 16384, 4096
    w = np.random.default_rng(1).standard_normal((rows, cols)).astype(np.float32)
    x = np.random.default_rng(2).standard_normal(cols).astype(np.float32)
    ref = w @ x
    out: dict = {"threads": threads, "loadavg_start": _loadavg(), "memcpy_GB_s_before": _memcpy_gb_s(threads),
                 "read_GB_s_before": _read_gb_s(threads), "memcpy_1t_GB_s": _memcpy_gb_s(1)}
    for name, qt in MATVEC_TYPES:
        q = _C.quantize_rows(qt, w)
        got = _C.matvec(qt, q, x, threads=threads)
        assert np.corrcoef(ref, got)[0, 1] > 0.99, name  # validate before timing
        copies = [q] + [q.copy() for _ in range(-(-(stream_mb << 20) // q.nbytes) - 1)]
        for kind, mats in (("cold", copies), ("hot", [q])):
            best, n = float("inf"), max(calls, len(mats))
            c0 = time.process_time()
            for i in range(n):
                t0 = time.perf_counter()
                _C.matvec(qt, mats[i % len(mats)], x, threads=threads)
                best = min(best, time.perf_counter() - t0)
            out[f"matvec_{name}_{kind}_GB_s"] = q.nbytes / best / 1e9
            if kind == "cold":  # weight bytes per CPU-second of all threads: the per-core rate while running
                out[f"matvec_{name}_per_core_GB_s"] = n * q.nbytes / (time.process_time() - c0) / 1e9
        out[f"matvec_{name}_GB_s"] = out[f"matvec_{name}_cold_GB_s"]
        del copies
    out["memcpy_GB_s_after"] = _memcpy_gb_s(threads)
    out["read_GB_s_after"] = _read_gb_s(threads)
    out["loadavg_end"] = _loadavg()
    # the bandwidth figures use the matvec's own thread count: a 1-thread copy understates what 2 cores draw
    out["memcpy_GB_s"] = max(out["memcpy_GB_s_before"], out["memcpy_GB_s_after"])
    out["read_GB_s"] = max(out["read_GB_s_before"], out["read_GB_s_after"])
    for name, _ in MATVEC_TYPES:
        out[f"matvec_{name}_pct"] = 100 * out[f"matvec_{name}_GB_s"] / out["read_GB_s"]
        out[f"matvec_{name}_pct_memcpy"] = 100 * out[f"matvec_{name}_GB_s"] / out["memcpy_GB_s"]
    return out


def format_matvec(mv: dict) -> str:
    types = ", ".join(f"{n} {mv[f'matvec_{n}_GB_s']:.1f} ({mv[f'matvec_{n}_pct']:.0f} % of read, "
                      f"{mv[f'matvec_{n}_pct_memcpy']:.0f} % of memcpy; hot "
                      f"{mv[f'matvec_{n}_hot_GB_s']:.1f}; per core {mv[f'matvec_{n}_per_core_GB_s']:.1f})"
                      for n, _ in MATVEC_TYPES)
    return (f"matvec GB/s, weights from DRAM ({mv['threads']} threads): {types}  | {mv['threads']}-thread read "
            f"stream {mv['read_GB_s_before']:.1f} / {mv['read_GB_s_after']:.1f} GB/s, memcpy read+write "
            f"{mv['memcpy_GB_s_before']:.1f} / {mv['memcpy_GB_s_after']:.1f} GB/s (before / after; 1-thread memcpy "
            f"{mv['memcpy_1t_GB_s']:.1f}) | load average "
            f"{mv['loadavg_start']:.2f} -> {mv['loadavg_end']:.2f}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", nargs="*", type=Path, default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", type=str, default="256", help="prompt lengths (context before decoding), e.g. 256,2048")
    ap.add_argument("--decode", type=int, default=64)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--flash-slice", type=Path, metavar="DIR",
                    help="write (once) and benchmark full-width flash-slice GGUFs (MXFP4_MOE, Q4_K_M) in DIR")
    ap.add_argument("--matvec-only", action="store_true", help="only the matvec vs memcpy measurement")
    ns = ap.parse_args(argv)
    if ns.matvec_only:
        mv = bench_matvec(ns.threads)
        print(format_matvec(mv))
        if ns.json:
            ns.json.write_text(json.dumps({"matvec": mv}, indent=2))
        return 0
    paths = list(ns.gguf)
    tmp = None
    if ns.flash_slice:
        from dsv4_gguf.config import PRESETS

        gf = _fixture()
        ns.flash_slice.mkdir(parents=True, exist_ok=True)
        for v in ("MXFP4_MOE", "Q4_K_M"):
            p = ns.flash_slice / f"flash-slice-{v}.gguf"
            if not p.exists():
                t0 = time.perf_counter()
                gf.write_streaming(p.with_suffix(".tmp"), PRESETS["flash-slice"], v).rename(p)
                print(f"wrote {p} ({p.stat().st_size / 1e9:.1f} GB, {time.perf_counter() - t0:.0f} s)")
            paths.append(p)
    if not paths:
        from dsv4_gguf.config import PRESETS
        from dsv4_gguf.reference import random_weights

        gf = _fixture()
        args = PRESETS["tiny"]
        w = {k: v.numpy() for k, v in random_weights(args, 0).items()}
        tmp = tempfile.TemporaryDirectory()
        paths = [gf.write_gguf(Path(tmp.name) / f"tiny_{v}.gguf", args, w, v) for v in ("MXFP4_MOE", "Q4_K_M")]
    results = {"models": [bench_pair(p, ns.threads, int(n), ns.decode) for p in paths for n in ns.prompt.split(",")],
               "matvec": bench_matvec(ns.threads)}
    for r in results["models"]:
        print(f"{r['gguf']:24s} ctx {r['prompt']:6d} prefill ours {r['ours_prefill_tok_s']:8.1f} tok/s  "
              f"llama.cpp {r['llama_prefill_tok_s']:8.1f}"
              f"  ratio {r['prefill_ratio']:.2f} | decode ours {r['ours_decode_tok_s']:7.1f}  llama.cpp "
              f"{r['llama_decode_tok_s']:7.1f}  ratio {r['decode_ratio']:.2f} | KV {r['kv_bytes_per_token']:.0f} B/tok")
    print(format_matvec(results["matvec"]))
    if ns.json:
        ns.json.write_text(json.dumps(results, indent=2))
    if tmp:
        tmp.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
