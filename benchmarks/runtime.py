"""Runtime benchmark: prefill / decode tokens/s of our C++ runtime vs llama.cpp (llama-cpp-python) on the same
GGUF, same threads, same run, as ratios; decode against its memory roof; quantized matvec GB/s next to the
read-stream and memcpy bandwidth measured in the same run; KV bytes/token.

The peer is llama.cpp built natively (``--peer native``, default: benchmarks/build_native_peer.sh, loaded from
.cache/llama-native/); ``--peer portable`` uses the AVX2-only build the tests use.  Each table names the peer's
build flags and this CPU's SIMD.  Validates before timing: both engines' logits on each prompt (untimed) must
have the same top-1 and a correlation >= --min-corr, otherwise it stops.  Timing alternates the engines
(ours, peer, ours, peer, ...) for --rounds rounds; best-of and every round are reported.

Roof: a decode token must read every weight of the main GGUF that the forward pass touches (one embedding row,
n_used of the routed experts per MoE layer, the rest whole; no MTP, no KV) at least once; at the read-stream
bandwidth measured in this run with the same threads that gives a tok/s bound.

Usage: python benchmarks/runtime.py [--gguf FILE ...] [--threads N] [--prompt 128 1024] [--decode 32]
                                    [--rounds N] [--peer native|portable] [--json OUT] [--matvec-only]
Without --gguf it converts the package's synthetic tiny checkpoint (full vocabulary) to MXFP4_MOE and Q4_K_M.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import ModuleType

import numpy as np
from llama_peer import cpu_simd, describe, load_llama_cpp

VARIANTS = ["MXFP4_MOE", "Q4_K_M"]


def decode_bytes_per_token(path: Path) -> dict:
    """Bytes of the main GGUF one decode token reads (model.cpp's views, session.cpp's forward pass): every
    tensor of the main-model blocks and the output whole, except one row of the embedding (the token's), of the
    hash-routing table (its experts) and of each compressor APE (its position in the compression window), and
    n_used of the n_experts slabs of each stacked expert tensor.  MTP blocks (sidecar or not) are not read.
    Tensors are told apart by their checkpoint sources in the converter's name map (``GGUFModel.gtensors``)."""
    from dsv4_gguf import open_gguf

    m = open_gguf(path, mtp=False)
    a = m.args
    out = {"experts": 0, "output": 0, "embedding_row": 0, "other": 0}
    main_bytes = 0
    for t in m.gtensors():
        if t.block is not None and t.block >= a.n_layers:
            continue
        r = m.info(t.name)
        main_bytes += r.nbytes
        src = t.sources[0]
        if src == "embed.weight" or src.endswith((".ape", ".tid2eid")):
            out["embedding_row" if src == "embed.weight" else "other"] += r.nbytes // r.shape[0]
        elif t.assemble == "stack":
            out["experts"] += r.nbytes * a.n_activated_experts // a.n_routed_experts
        elif src == "head.weight":
            out["output"] += r.nbytes
        else:
            out["other"] += r.nbytes
    out["total"] = sum(out.values())
    out["main_model_bytes"] = main_bytes  # every main-model tensor, whole
    return out


def _prompt(vocab: int, n: int) -> list[int]:
    return np.random.default_rng(n).integers(0, vocab, n).tolist()


class Peer:
    """One llama.cpp context for a prompt length: prefill, greedy decode, last-position logits."""

    def __init__(self, llama_cpp: ModuleType, path: Path, n_ctx: int, threads: int):
        self.lib = llama_cpp
        self.llm = llama_cpp.Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_batch=512,
            n_ubatch=512,
            verbose=False,
            n_threads=threads,
            n_threads_batch=threads,
        )

    def logits(self) -> np.ndarray:  # without logits_all (which would add a full-vocab head per prompt token)
        p = self.lib.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        return np.ctypeslib.as_array(p, shape=(self.llm.n_vocab(),))

    def prefill(self, toks: list[int]) -> np.ndarray:
        self.llm.reset()  # n_tokens = 0: eval() drops the whole KV cache before it writes
        self.llm.eval(toks)
        return self.logits()

    def decode(self, tok: int) -> np.ndarray:
        self.llm.eval([tok])
        return self.logits()

    def close(self) -> None:
        self.llm.close()


def _ours_round(ours, toks: list[int], n_decode: int) -> tuple[float, float, list[int]]:
    s = ours.session(ctx=len(toks) + n_decode + 8)
    t0 = time.perf_counter()
    nxt = int(s.prefill(toks).argmax())
    t_pf = time.perf_counter() - t0
    out = [nxt]
    t0 = time.perf_counter()
    for _ in range(n_decode):
        nxt = int(s.decode(nxt).argmax())
        out.append(nxt)
    return t_pf, time.perf_counter() - t0, out


def _peer_round(peer: Peer, toks: list[int], n_decode: int) -> tuple[float, float, list[int]]:
    t0 = time.perf_counter()
    nxt = int(peer.prefill(toks).argmax())
    t_pf = time.perf_counter() - t0
    out = [nxt]
    t0 = time.perf_counter()
    for _ in range(n_decode):
        nxt = int(peer.decode(nxt).argmax())
        out.append(nxt)
    return t_pf, time.perf_counter() - t0, out


def validate(path: Path, ours, peer: Peer, toks: list[int], min_corr: float, top1: bool) -> dict:
    """Both engines' last-position logits on the prompt (untimed); stop unless they agree."""
    lg = np.asarray(ours.session(ctx=len(toks) + 8).prefill(toks), dtype=np.float64)
    pl = np.asarray(peer.prefill(toks), dtype=np.float64)
    ok_finite = bool(np.isfinite(lg).all() and np.isfinite(pl).all())
    corr = float(np.corrcoef(lg, pl)[0, 1]) if ok_finite else float("nan")
    r = {"top1_ours": int(lg.argmax()), "top1_peer": int(pl.argmax()), "logit_corr": corr}
    r["top1_equal"] = r["top1_ours"] == r["top1_peer"]
    if not ok_finite or not corr >= min_corr or (top1 and not r["top1_equal"]):
        sys.exit(
            f"validation failed on {path.name}, prompt {len(toks)}: logit correlation {corr:.6f} (need >= "
            f"{min_corr}), top-1 ours {r['top1_ours']} vs llama.cpp {r['top1_peer']}"
            + ("" if ok_finite else ", non-finite logits")
            + "; the engines do not compute the same model here, so nothing was timed (--min-corr / --no-top1 "
            "relax the check)"
        )
    return r


def bench_model(path: Path, llama_cpp: ModuleType, ns: argparse.Namespace) -> list[dict]:
    from dsv4_gguf import runtime

    ours = runtime.load(path, threads=ns.threads, mtp=False)
    bpt = decode_bytes_per_token(path)
    rows = []
    for n in ns.prompt:
        toks = _prompt(ours.vocab_size, n)
        peer = Peer(llama_cpp, path, n + ns.decode + 8, ns.threads)
        r: dict = {"gguf": path.name, "threads": ns.threads, "prompt": n, "decode": ns.decode, "bytes_per_token": bpt}
        r["validate"] = validate(path, ours, peer, toks, ns.min_corr, not ns.no_top1)
        r["rounds"] = []
        for _ in range(ns.rounds):  # alternate: a slow phase of the shared machine hits both engines
            o_pf, o_dec, o_toks = _ours_round(ours, toks, ns.decode)
            p_pf, p_dec, p_toks = _peer_round(peer, toks, ns.decode)
            r["rounds"].append(
                {
                    "ours_prefill_tok_s": n / o_pf,
                    "ours_decode_tok_s": ns.decode / o_dec,
                    "peer_prefill_tok_s": n / p_pf,
                    "peer_decode_tok_s": ns.decode / p_dec,
                    # greedy paths may part after a near-tie; recorded, not checked (the same work either way)
                    "greedy_tokens_equal": sum(a == b for a, b in zip(o_toks, p_toks, strict=True)),
                }
            )
        for k in ("ours_prefill_tok_s", "ours_decode_tok_s", "peer_prefill_tok_s", "peer_decode_tok_s"):
            r[k] = max(x[k] for x in r["rounds"])
        r["prefill_ratio"] = r["ours_prefill_tok_s"] / r["peer_prefill_tok_s"]
        r["decode_ratio"] = r["ours_decode_tok_s"] / r["peer_decode_tok_s"]
        s = ours.session(ctx=8)
        r["kv_bytes_per_token"] = s.kv_bytes()["per_token"]
        peer.close()
        del s
        rows.append(r)
        print(
            f"{path.name} prompt {n}: validated (corr {r['validate']['logit_corr']:.6f}), "
            f"decode ours/peer {r['decode_ratio']:.2f}",
            flush=True,
        )
    return rows


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
            list(
                ex.map(
                    lambda t: np.copyto(dst[t * step : (t + 1) * step], src[t * step : (t + 1) * step]), range(threads)
                )
            )
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
            list(ex.map(lambda t: np.bitwise_or.reduce(src[t * step : (t + 1) * step]), range(threads)))
            best = min(best, time.perf_counter() - t0)
    return src.nbytes / best / 1e9


def _loadavg() -> float:
    try:
        return float(Path("/proc/loadavg").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return float("nan")


MATVEC_RTOL = 1e-5  # of sum |w * a|: fp32 sums of exact per-block integer dots (the bound of tests/quant/test_dot.py)


def check_matvec(qtype: int, q: np.ndarray, x: np.ndarray, got: np.ndarray, what: str) -> float:
    """Validate ``got = matvec(q, x)`` before it is timed: every row within MATVEC_RTOL * sum |w * a| of the
    float64 dot of the dequantized row ``w`` and the activation ``a`` as the kernel sees it (``x`` quantized to
    the type's vec_dot format and back).  Raises otherwise; returns the worst error / bound."""
    from gguf import GGMLQuantizationType

    from dsv4_gguf import quants
    from dsv4_gguf.constants import QTYPES

    qt = GGMLQuantizationType(qtype)
    at = QTYPES[qt].vec_dot_type
    a = x if at.name == "F32" else quants.dequantize(quants.quantize(x[None], at), at)[0]
    a = a.astype(np.float64)
    worst = 0.0
    if got.shape != (q.shape[0],) or not np.isfinite(got).all():
        raise AssertionError(f"matvec {what}: output shape {got.shape} (want {(q.shape[0],)}) or non-finite values")
    for r0 in range(0, q.shape[0], 2048):  # row blocks: a 16384 x 4096 matrix is never dequantized whole
        wd = quants.dequantize(q[r0 : r0 + 2048], qt).astype(np.float64)
        bound = MATVEC_RTOL * (np.abs(wd) @ np.abs(a)) + 1e-30
        worst = max(worst, float((np.abs(got[r0 : r0 + 2048] - wd @ a) / bound).max()))
    if worst > 1.0:
        raise AssertionError(
            f"matvec {what}: a row is off the float64 dot of its dequantized weights by {worst:.3g}x the bound "
            f"({MATVEC_RTOL:g} * sum |w * a|); nothing was timed"
        )
    return worst


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
    out: dict = {
        "threads": threads,
        "loadavg_start": _loadavg(),
        "memcpy_GB_s_before": _memcpy_gb_s(threads),
        "read_GB_s_before": _read_gb_s(threads),
        "memcpy_1t_GB_s": _memcpy_gb_s(1),
    }
    for name, qt in MATVEC_TYPES:
        q = _C.quantize_rows(qt, w)
        out[f"matvec_{name}_validate"] = check_matvec(qt, q, x, _C.matvec(qt, q, x, threads=threads), name)
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
    types = ", ".join(
        f"{n} {mv[f'matvec_{n}_GB_s']:.1f} ({mv[f'matvec_{n}_pct']:.0f} % of read, "
        f"{mv[f'matvec_{n}_pct_memcpy']:.0f} % of memcpy; hot "
        f"{mv[f'matvec_{n}_hot_GB_s']:.1f}; per core {mv[f'matvec_{n}_per_core_GB_s']:.1f})"
        for n, _ in MATVEC_TYPES
    )
    return (
        f"matvec GB/s, weights from DRAM ({mv['threads']} threads): {types}  | {mv['threads']}-thread read "
        f"stream {mv['read_GB_s_before']:.1f} / {mv['read_GB_s_after']:.1f} GB/s, memcpy read+write "
        f"{mv['memcpy_GB_s_before']:.1f} / {mv['memcpy_GB_s_after']:.1f} GB/s (before / after; 1-thread memcpy "
        f"{mv['memcpy_1t_GB_s']:.1f}) | load average "
        f"{mv['loadavg_start']:.2f} -> {mv['loadavg_end']:.2f}" + matvec_roof_note(mv)
    )


def matvec_roof_note(mv: dict) -> str:
    """A matvec cannot read faster than the read stream: a percentage above 100 means the probe under-measured
    in this run (another job, or weights in cache), so the percentages of that run bound nothing."""
    over = [n for n, _ in MATVEC_TYPES if mv[f"matvec_{n}_pct"] > 100]
    if not over:
        return ""
    return (
        f" | WARNING: {', '.join(over)} above 100 % of the read stream: the probe under-measured in this run, "
        "so these percentages are no roof fractions"
    )


def add_roofline(models: list[dict], read_gb_s: float) -> dict:
    """Decode tok/s of both engines as a fraction of bandwidth / bytes per token."""
    for r in models:
        roof = read_gb_s * 1e9 / r["bytes_per_token"]["total"]
        r["roof_tok_s"] = roof
        r["ours_frac_of_roof"] = r["ours_decode_tok_s"] / roof
        r["peer_frac_of_roof"] = r["peer_decode_tok_s"] / roof
    return {
        "read_GB_s": read_gb_s,
        "note": "measured-bandwidth bound: weight bytes one decode token reads / the read-stream bandwidth "
        "measured in this run with the same threads; a fraction above 1 means the bandwidth probe under-measures "
        "(e.g. weights served from cache)",
    }


def format_models(res: dict) -> str:
    head = (
        "| gguf | prompt | top-1 = | logit corr | prefill tok/s ours | peer | ours/peer | decode tok/s ours | peer | "
        "ours/peer | MB/token | roof tok/s | ours/roof | peer/roof |"
    )
    ours = res["ours"]
    lines = [
        f"ours: dsv4-gguf {ours['version']}, kernels {ours['kernel_impl']} (compiled: "
        f"{' '.join(ours['simd_compiled'])}; {ours['compiler']} {ours['build_type']})",
        describe(res["peer"], res["cpu"]),
        f"{res['threads']} threads; {res['rounds']} rounds, engines alternating (ours, peer, ...); best of rounds. "
        f"Validated before timing: top-1 equal{'' if res['top1_required'] else ' (not required)'} and logit "
        f"correlation >= {res['min_corr']} on each prompt. 1-minute load average {res['loadavg_models'][0]:.2f} -> "
        f"{res['loadavg_models'][1]:.2f} (a shared machine: compare rounds before trusting a best-of).",
        "",
        head,
        "|" + "---|" * (head.count("|") - 1),
    ]
    for r in res["models"]:
        v = r["validate"]
        lines.append(
            f"| {r['gguf']} | {r['prompt']} | {'yes' if v['top1_equal'] else 'no'} | {v['logit_corr']:.6f} | "
            f"{r['ours_prefill_tok_s']:.1f} | {r['peer_prefill_tok_s']:.1f} | {r['prefill_ratio']:.2f} | "
            f"{r['ours_decode_tok_s']:.1f} | {r['peer_decode_tok_s']:.1f} | {r['decode_ratio']:.2f} | "
            f"{r['bytes_per_token']['total'] / 1e6:.2f} | {r['roof_tok_s']:.1f} | {r['ours_frac_of_roof']:.2f} | "
            f"{r['peer_frac_of_roof']:.2f} |"
        )
    lines.append("")
    for r in res["models"]:
        for i, x in enumerate(r["rounds"]):
            lines.append(
                f"{r['gguf']} prompt {r['prompt']} round {i + 1}: prefill ours {x['ours_prefill_tok_s']:.1f} "
                f"peer {x['peer_prefill_tok_s']:.1f} tok/s, decode ours {x['ours_decode_tok_s']:.1f} peer "
                f"{x['peer_decode_tok_s']:.1f} tok/s, greedy tokens equal {x['greedy_tokens_equal']}/{r['decode'] + 1}"
            )
    rf = res["roofline"]
    lines += ["", f"Roof ({rf['read_GB_s']:.1f} GB/s {res['threads']}-thread read stream): {rf['note']}."]
    for r in res["models"][:: len(res["prompts"])]:
        b = r["bytes_per_token"]
        lines.append(
            f"  {r['gguf']}: {b['total'] / 1e6:.2f} MB/token = output {b['output'] / 1e6:.2f} + routed experts "
            f"{b['experts'] / 1e6:.2f} + other weights {b['other'] / 1e6:.2f} + embedding row {b['embedding_row']} B "
            f"(of {b['main_model_bytes'] / 1e6:.1f} MB of main-model tensors); KV {r['kv_bytes_per_token']:.0f} B/token"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--gguf", nargs="*", type=Path, default=[])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--prompt", nargs="+", default=["256"], help="prompt lengths (context before decoding): 128 1024")
    ap.add_argument("--decode", type=int, default=32, help="greedy decode steps after each prompt (default 32)")
    ap.add_argument("--rounds", type=int, default=2, help="timed rounds per engine, alternating (default 2)")
    ap.add_argument(
        "--peer",
        choices=("native", "portable"),
        default="native",
        help="llama.cpp build: native (benchmarks/build_native_peer.sh, default) or portable (AVX2)",
    )
    ap.add_argument("--min-corr", type=float, default=0.999, help="validation: least prompt-logit correlation")
    ap.add_argument("--no-top1", action="store_true", help="validation: do not require equal top-1 tokens")
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--flash-slice",
        type=Path,
        metavar="DIR",
        help="benchmark full-width flash-slice GGUFs (MXFP4_MOE, Q4_K_M) in DIR, converting the missing ones "
        "from a synthetic checkpoint (benchmarks/convert.py --keep-outputs DIR leaves the same files)",
    )
    ap.add_argument("--matvec-only", action="store_true", help="only the matvec vs memcpy measurement")
    ns = ap.parse_args(argv)
    ns.prompt = [int(x) for p in ns.prompt for x in str(p).split(",") if x]
    if ns.rounds < 1 or ns.decode < 1 or min(ns.prompt) < 1:
        ap.error("--rounds, --decode and every --prompt length must be >= 1")
    if ns.matvec_only:
        mv = bench_matvec(ns.threads)
        print(format_matvec(mv))
        if ns.json:
            ns.json.write_text(json.dumps({"matvec": mv}, indent=2))
        return 0
    llama_cpp, peer = load_llama_cpp(ns.peer)  # first: a missing native build stops before any work
    paths = list(ns.gguf)
    tmp = None
    if ns.flash_slice:
        from synth_gguf import write_ggufs

        t0 = time.perf_counter()
        paths += write_ggufs("flash-slice", ns.flash_slice, VARIANTS)
        print(f"flash-slice GGUFs in {ns.flash_slice} ({time.perf_counter() - t0:.0f} s)", flush=True)
    if not paths:
        from synth_gguf import write_ggufs

        tmp = tempfile.TemporaryDirectory()
        paths = write_ggufs("tiny", Path(tmp.name), VARIANTS)
    load_start = _loadavg()
    try:
        models = [r for p in paths for r in bench_model(p, llama_cpp, ns)]
    finally:
        if tmp:
            tmp.cleanup()
    mv = bench_matvec(ns.threads)
    from dsv4_gguf import build_info

    res = {
        "ours": build_info(),
        "peer": peer,
        "cpu": cpu_simd(),
        "threads": ns.threads,
        "rounds": ns.rounds,
        "prompts": ns.prompt,
        "loadavg_models": [load_start, _loadavg()],
        "min_corr": ns.min_corr,
        "top1_required": not ns.no_top1,
        "models": models,
        "roofline": add_roofline(models, mv["read_GB_s"]),
        "matvec": mv,
    }
    print(format_models(res))
    print(format_matvec(mv))
    if ns.json:
        ns.json.write_text(json.dumps(res, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
